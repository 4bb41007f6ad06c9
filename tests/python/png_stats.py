"""Facts about a PNG screenshot, for tests that check a page rendered: size, how much of it is
not white, and how many pixels are close to each of the given colours.

    png_stats.py FILE [#rrggbb ...]  ->  {"width", "height", "non_white_fraction", "colors": {"#rrggbb": n}}
"""
import json
import sys

from PIL import Image


def main() -> None:
    img = Image.open(sys.argv[1]).convert("RGB")
    targets = {c: tuple(int(c[i : i + 2], 16) for i in (1, 3, 5)) for c in sys.argv[2:]}
    counts = {c: 0 for c in targets}
    non_white = 0
    pixels = img.getdata()
    for p in pixels:
        if sum(p) < 3 * 245:
            non_white += 1
        for c, t in targets.items():
            if all(abs(p[i] - t[i]) <= 12 for i in range(3)):
                counts[c] += 1
    total = img.width * img.height
    print(json.dumps({"width": img.width, "height": img.height, "non_white_fraction": non_white / total, "colors": counts}))


if __name__ == "__main__":
    main()
