//! What happened in one event, before it is written as columns: the device, the processes
//! involved (created, initiating, its parent), the file, network endpoints, registry value or
//! mail it touched, and the ActionType. Built per table so that the columns of one record agree
//! with each other (a FileName matches its FolderPath, a command line starts with its image).

use rand::{Rng, rngs::SmallRng};

use crate::{
    cmdline,
    images::{self, DLLS, IMAGES, Image, Role},
    json::{TICKS_PER_SEC, fnv, mix, push_guid, push_hex},
    pools::{DOC_EXTENSIONS, FILE_STEMS, REMOTE_HOSTS, REMOTE_PORTS, Weighted},
    world::{Account, Device, World, pick, pick_w},
};

/// A process in an event.
#[derive(Debug)]
pub(crate) struct Proc<'w> {
    pub img: &'static Image,
    pub pid: u64,
    pub created: i64,
    /// Full path of the image; empty for the System process.
    pub path: String,
    pub cmdline: String,
    pub account: &'w Account,
    pub integrity: &'static str,
    pub elevation: &'static str,
    pub logon_id: u64,
    pub session: u64,
    pub unique_id: u64,
}

impl Proc<'_> {
    /// Seed of the image's digests: the same binary, the same hashes.
    pub(crate) fn digest_seed(&self) -> u64 {
        fnv(self.img.file) ^ fnv(self.img.version)
    }
}

/// A file an event is about.
#[derive(Debug, Default)]
pub(crate) struct FileObj {
    pub name: String,
    /// Full path, file name included.
    pub path: String,
    pub seed: u64,
    pub size: Option<u64>,
    pub origin_url: String,
    pub origin_ip: String,
    pub previous: Option<(String, String)>,
    pub share: String,
}

/// Network endpoints of an event.
#[derive(Debug, Default)]
pub(crate) struct Net {
    pub remote_ip: String,
    pub remote_port: Option<u16>,
    pub remote_url: String,
    pub local_ip: String,
    pub local_port: Option<u16>,
    pub protocol: &'static str,
    pub remote_type: &'static str,
}

/// A registry value an event touched.
#[derive(Debug, Default)]
pub(crate) struct Reg {
    pub key: String,
    pub value_type: &'static str,
    pub value_name: String,
    pub data: String,
    pub previous: Option<(String, String, String)>,
}

/// Everything one record's columns are written from.
#[derive(Debug)]
pub(crate) struct Ctx<'w> {
    pub table: &'w str,
    /// Event time, in ticks.
    pub ts: i64,
    pub action: &'static str,
    pub device: &'w Device,
    /// The person the event is about (identity, cloud, mail and alert tables).
    pub user: &'w Account,
    /// Created or target process, initiating process, initiating process's parent.
    pub procs: [Option<Proc<'w>>; 3],
    pub file: Option<FileObj>,
    /// Account (the `Account*` columns) when it differs from the initiating process's.
    pub account: Option<&'w Account>,
    pub net: Option<Net>,
    pub reg: Option<Reg>,
    /// JSON text of `AdditionalFields`, if any.
    pub additional: Option<String>,
    pub report_id: u64,
    /// Shared values of the lower-volume tables (see [`crate::named::prepare`]).
    pub extra: crate::named::Extra,
}

/// .NET ticks at the Unix epoch.
const DOTNET_EPOCH_TICKS: i64 = 621_355_968_000_000_000;

const BOOT_MAX: i64 = 9 * 86_400 * TICKS_PER_SEC;

impl<'w> Ctx<'w> {
    pub(crate) fn new(world: &'w World, table: &'w str, ts: i64, rng: &mut SmallRng) -> Self {
        let device = world.pick_device(rng);
        Self {
            table,
            ts,
            action: "",
            device,
            user: if rng.random_bool(0.8) { &world.users[device.user] } else { world.pick_user(rng) },
            procs: [None, None, None],
            file: None,
            account: None,
            net: None,
            reg: None,
            additional: None,
            report_id: rng.random_range(1..60_000),
            extra: crate::named::Extra::default(),
        }
    }

    /// Builds the initiating process (and its parent) of an event of `role`.
    pub(crate) fn initiating(&mut self, world: &'w World, role: Role, rng: &mut SmallRng) {
        self.initiating_image(world, pick_image(rng, role), rng);
    }

    /// Builds the initiating process of `img` (and its parent).
    pub(crate) fn initiating_image(&mut self, world: &'w World, img: &'static Image, rng: &mut SmallRng) {
        let created = self.ts - rng.random_range(TICKS_PER_SEC..BOOT_MAX / 2);
        let init = self.process(world, img, created, rng);
        self.parent_of(world, &init, rng);
        self.procs[1] = Some(init);
    }

    pub(crate) fn parent_of(&mut self, world: &'w World, child: &Proc<'w>, rng: &mut SmallRng) {
        if let Some(name) = child.img.parents.get(rng.random_range(0..child.img.parents.len().max(1))) {
            let img = &IMAGES[images::find(name).unwrap_or(0)];
            let created = child.created - rng.random_range(TICKS_PER_SEC / 10..BOOT_MAX / 2);
            self.procs[2] = Some(self.process(world, img, created, rng));
        }
    }

    pub(crate) fn process(&self, world: &'w World, img: &'static Image, created: i64, rng: &mut SmallRng) -> Proc<'w> {
        let user = &world.users[self.device.user];
        let account = if img.system {
            &world.builtin[if img.cmd == images::Cmd::Service { rng.random_range(0..3) } else { 0 }]
        } else {
            user
        };
        let elevated = !account.builtin && rng.random_bool(0.15);
        let mut path = String::new();
        if !img.dir.is_empty() {
            path.push_str(&img.dir.replace("%U%", &user.name));
            path.push('\\');
            path.push_str(img.file);
        }
        let mut cmd = String::new();
        cmdline::write(&mut cmd, img, &path, &user.name, rng);
        Proc {
            img,
            pid: if img.cmd == images::Cmd::None { 4 } else { rng.random_range(25..12_000) * 4 },
            created,
            path,
            cmdline: cmd,
            account,
            integrity: match (account.builtin, elevated) {
                (true, _) => "System",
                (false, true) => "High",
                (false, false) => "Medium",
            },
            elevation: match (account.builtin, elevated) {
                (true, _) => "TokenElevationTypeDefault",
                (false, true) => "TokenElevationTypeFull",
                (false, false) => "TokenElevationTypeLimited",
            },
            logon_id: match account.sid.as_str() {
                "S-1-5-18" => 999,
                "S-1-5-19" => 997,
                "S-1-5-20" => 996,
                _ => rng.random_range(100_000..90_000_000),
            },
            session: if account.builtin { 0 } else { rng.random_range(1..4) },
            unique_id: rng.random_range(1_000_000_000_000_000..9_999_999_999_999_999),
        }
    }
}

fn pick_image(rng: &mut SmallRng, role: Role) -> &'static Image {
    let r = role as usize;
    let total: u32 = IMAGES.iter().map(|i| u32::from(i.w[r])).sum();
    let mut x = rng.random_range(0..total);
    for img in IMAGES {
        let w = u32::from(img.w[r]);
        if x < w {
            return img;
        }
        x -= w;
    }
    &IMAGES[0]
}

/// Fills the context of a Device* event table; other tables keep the defaults.
pub(crate) fn build<'w>(ctx: &mut Ctx<'w>, world: &'w World, rng: &mut SmallRng) {
    // Device reports carry either a per-device counter or, like DeviceInfo always does, an
    // 18-digit id (.NET ticks of the report) that does not fit in a double.
    if ctx.table.starts_with("Device")
        && (matches!(ctx.table, "DeviceInfo" | "DeviceNetworkInfo") || rng.random_bool(0.1))
    {
        ctx.report_id = (ctx.ts + DOTNET_EPOCH_TICKS) as u64 - rng.random_range(0..50_000_000);
    }
    match ctx.table {
        "DeviceProcessEvents" => {
            ctx.action = "ProcessCreated";
            let img = pick_image(rng, Role::Created);
            let created = ctx.ts - rng.random_range(0..TICKS_PER_SEC / 100);
            let child = ctx.process(world, img, created, rng);
            ctx.file = Some(image_file(&child, rng));
            ctx.account = Some(child.account);
            ctx.parent_of(world, &child, rng);
            // The created process's parent is the initiating process; its parent, ours.
            if let Some(init) = ctx.procs[2].take() {
                ctx.parent_of(world, &init, rng);
                ctx.procs[1] = Some(init);
            }
            ctx.procs[0] = Some(child);
        }
        "DeviceNetworkEvents" => {
            ctx.action = pick_w(rng, NETWORK_ACTIONS);
            ctx.initiating(world, Role::Network, rng);
            ctx.net = Some(net(ctx, rng));
        }
        "DeviceFileEvents" => {
            ctx.action =
                pick_w(rng, &[("FileCreated", 40), ("FileModified", 35), ("FileDeleted", 15), ("FileRenamed", 10)]);
            ctx.initiating(world, Role::File, rng);
            let mut f = doc_file(ctx, rng);
            if ctx.action == "FileRenamed" {
                f.previous =
                    Some((format!("{}.crdownload", f.name), f.path.rsplit_once('\\').map_or("", |p| p.0).to_string()));
            }
            if ctx.action == "FileDeleted" {
                f.size = None;
            }
            ctx.file = Some(f);
        }
        "DeviceRegistryEvents" => {
            ctx.action = pick_w(
                rng,
                &[
                    ("RegistryValueSet", 62),
                    ("RegistryKeyCreated", 14),
                    ("RegistryValueDeleted", 12),
                    ("RegistryKeyDeleted", 8),
                    ("RegistryKeyRenamed", 1),
                ],
            );
            ctx.initiating(world, Role::Registry, rng);
            ctx.reg = Some(crate::registry::value(ctx, rng));
        }
        "DeviceImageLoadEvents" => {
            ctx.action = "ImageLoaded";
            ctx.initiating(world, Role::Loader, rng);
            let (name, _, size) = pick(rng, DLLS);
            let path = format!("{}\\{name}", images::dll_dir(name));
            ctx.file = Some(FileObj {
                name: name.to_string(),
                seed: fnv(&path),
                path,
                size: Some(size),
                ..FileObj::default()
            });
        }
        "DeviceEvents" => crate::device_events::build(ctx, world, rng),
        "DeviceLogonEvents" => {
            ctx.action = pick_w(rng, &[("LogonSuccess", 70), ("LogonFailed", 15), ("LogonAttempted", 10)]);
            let img = &IMAGES
                [images::find(pick(rng, &["lsass.exe", "winlogon.exe", "svchost.exe", "services.exe"])).unwrap_or(0)];
            let created = ctx.ts - rng.random_range(TICKS_PER_SEC..BOOT_MAX);
            let p = ctx.process(world, img, created, rng);
            ctx.parent_of(world, &p, rng);
            ctx.procs[1] = Some(p);
            ctx.account = Some(if rng.random_bool(0.85) { ctx.user } else { &world.builtin[rng.random_range(0..3)] });
            ctx.net = Some(Net {
                protocol: pick(rng, &["Negotiate", "Kerberos", "NTLM"]),
                remote_ip: if rng.random_bool(0.5) { String::new() } else { lan_ip(rng) },
                remote_port: if rng.random_bool(0.5) { None } else { Some(rng.random_range(49_152..65_535)) },
                remote_type: "Private",
                ..Net::default()
            });
        }
        "DeviceFileCertificateInfo" => {
            let p = ctx.process(world, pick_image(rng, Role::Created), ctx.ts, rng);
            ctx.file = Some(image_file(&p, rng));
            crate::named::prepare(ctx, world, rng);
        }
        _ => crate::named::prepare(ctx, world, rng),
    }
}

const NETWORK_ACTIONS: Weighted<&str> = &[
    ("ConnectionSuccess", 55),
    ("ConnectionFailed", 8),
    ("InboundConnectionAccepted", 10),
    ("ListeningConnectionCreated", 6),
    ("ConnectionRequest", 4),
    ("ConnectionFound", 3),
    ("ConnectionAttempt", 3),
    ("ConnectionAcknowledged", 2),
    ("DnsConnectionInspected", 3),
    ("HttpConnectionInspected", 2),
    ("SslConnectionInspected", 3),
    ("NetworkSignatureInspected", 1),
];

/// The executable of a created process, as the file of the event.
fn image_file(p: &Proc<'_>, rng: &mut SmallRng) -> FileObj {
    FileObj {
        name: p.img.file.to_string(),
        path: p.path.clone(),
        seed: p.digest_seed(),
        size: (p.img.size > 0 && rng.random_bool(0.95)).then_some(p.img.size),
        ..FileObj::default()
    }
}

/// A document, download, temp or cache file for a file event.
pub(crate) fn doc_file(ctx: &Ctx<'_>, rng: &mut SmallRng) -> FileObj {
    let user = &ctx.user.name;
    let ext = pick_w(rng, DOC_EXTENSIONS);
    let mut name = String::new();
    let mut f = FileObj::default();
    let dir = match rng.random_range(0..12) {
        0..=2 => format!("C:\\Users\\{user}\\Downloads"),
        3 | 4 => format!("C:\\Users\\{user}\\Documents"),
        5 => format!("C:\\Users\\{user}\\OneDrive - Contoso\\Shared"),
        6 => {
            name.push_str("f_");
            push_hex(&mut name, rng.random(), 6);
            format!("C:\\Users\\{user}\\AppData\\Local\\Microsoft\\Edge\\User Data\\Default\\Cache\\Cache_Data")
        }
        7 => {
            let mut d = String::from("C:\\Windows\\Temp\\");
            push_guid(&mut d, rng.random());
            d
        }
        8 => {
            f.share = "finance".to_string();
            "\\\\fs01.corp.contoso.com\\finance\\Reports".to_string()
        }
        9 => {
            let mut d = String::from("C:\\Windows\\SoftwareDistribution\\Download\\");
            push_hex(&mut d, rng.random(), 32);
            d
        }
        _ => format!("C:\\Users\\{user}\\AppData\\Local\\Temp"),
    };
    if name.is_empty() {
        if ext == "tmp" || rng.random_bool(0.2) {
            name.push_str(pick(rng, &["~DF", "tmp", "wct", "msohtmlclip"]));
            push_hex(&mut name, rng.random(), 4);
            name.make_ascii_uppercase();
        } else {
            name.push_str(pick(rng, FILE_STEMS));
        }
        name.push('.');
        name.push_str(ext);
    }
    if dir.contains("\\Downloads") && rng.random_bool(0.6) {
        let host = pick_w(rng, REMOTE_HOSTS);
        f.origin_url = format!("https://{host}/download/{name}");
        f.origin_ip = public_ip(rng);
    }
    f.path = format!("{dir}\\{name}");
    f.seed = fnv(&f.path) ^ rng.random_range(0..4);
    f.size = Some(mix(f.seed) % 4_000_000 + 512);
    f.name = name;
    f
}

/// Endpoints of a network event.
fn net(ctx: &Ctx<'_>, rng: &mut SmallRng) -> Net {
    let inbound = matches!(ctx.action, "InboundConnectionAccepted" | "ListeningConnectionCreated");
    let udp = !inbound && rng.random_bool(0.12);
    let mut n = Net {
        local_ip: if rng.random_bool(0.05) { ctx.device.ipv6.clone() } else { ctx.device.ip.clone() },
        protocol: if udp { "Udp" } else { "Tcp" },
        ..Net::default()
    };
    if inbound {
        let port =
            pick_w(rng, &[(445u16, 30), (3389, 10), (135, 15), (5985, 8), (139, 6), (80, 5), (443, 8), (7680, 12)]);
        n.local_port = Some(port);
        if ctx.action == "ListeningConnectionCreated" {
            n.remote_ip = "0.0.0.0".to_string();
            n.remote_port = Some(0);
            n.remote_type = "Reserved";
        } else {
            n.remote_ip = lan_ip(rng);
            n.remote_port = Some(rng.random_range(49_152..65_535));
            n.remote_type = "Private";
        }
        return n;
    }
    n.local_port = Some(rng.random_range(49_152..65_535));
    let port = if udp {
        pick_w(rng, &[(53u16, 60), (123, 15), (5353, 10), (1900, 5), (443, 10)])
    } else {
        pick_w(rng, REMOTE_PORTS)
    };
    n.remote_port = Some(port);
    let internal = matches!(port, 445 | 135 | 389 | 88 | 5985 | 636) || rng.random_bool(0.15);
    if internal {
        n.remote_ip = lan_ip(rng);
        n.remote_type = "Private";
        if rng.random_bool(0.5) {
            n.remote_url = pick(
                rng,
                &["dc01.corp.contoso.com", "dc02.corp.contoso.com", "fs01.corp.contoso.com", "sccm01.corp.contoso.com"],
            )
            .to_string();
        }
    } else if port == 53 && rng.random_bool(0.6) {
        n.remote_ip = pick(rng, &["10.10.0.10", "10.10.0.11", "168.63.129.16"]).to_string();
        n.remote_type = "Private";
    } else {
        n.remote_ip = public_ip(rng);
        n.remote_type = "Public";
        if matches!(port, 443 | 80 | 8080) && rng.random_bool(0.7) {
            n.remote_url = pick_w(rng, REMOTE_HOSTS).to_string();
        }
    }
    n
}

pub(crate) fn lan_ip(rng: &mut SmallRng) -> String {
    format!("10.{}.{}.{}", rng.random_range(10..50), rng.random_range(0..255), rng.random_range(2..254))
}

pub(crate) fn public_ip(rng: &mut SmallRng) -> String {
    if rng.random_bool(0.06) {
        let mut s = String::from("2603:1026:");
        push_hex(&mut s, rng.random(), 3);
        s.push_str("::");
        push_hex(&mut s, rng.random(), 2);
        return s;
    }
    let first = pick(rng, &[13u8, 20, 23, 34, 35, 40, 52, 104, 142, 151, 172, 185, 199, 204]);
    format!("{first}.{}.{}.{}", rng.random_range(0..255), rng.random_range(0..255), rng.random_range(1..255))
}
