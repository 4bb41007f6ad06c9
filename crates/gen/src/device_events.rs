//! `DeviceEvents`: the catch-all table of sensor events (API calls, named pipes, DNS answers,
//! ASR audits, scheduled tasks, PowerShell commands...), each with its `AdditionalFields` JSON
//! text in the shape Defender writes for that ActionType.

use rand::{Rng, rngs::SmallRng};

use crate::{
    images::{self, IMAGES, Image, Role},
    json::{Obj, TICKS_PER_SEC, fnv, guid, push_time},
    pools::{POWERSHELL_SNIPPETS, REMOTE_HOSTS, URL_PATHS, Weighted},
    scenario::{Ctx, FileObj, Net, doc_file, lan_ip, public_ip},
    world::{World, pick, pick_w},
};

const ACTIONS: Weighted<&str> = &[
    ("NamedPipeEvent", 14),
    ("DnsQueryResponse", 10),
    ("OpenProcessApiCall", 10),
    ("PowerShellCommand", 10),
    ("BrowserLaunchedToOpenUrl", 8),
    ("ShellLinkCreateFileEvent", 5),
    ("LdapSearch", 5),
    ("AsrLsassCredentialTheftAudited", 4),
    ("CreateRemoteThreadApiCall", 4),
    ("DpapiAccessed", 4),
    ("GetClipboardData", 4),
    ("AntivirusScanCompleted", 3),
    ("AuditPolicyModification", 3),
    ("ReadProcessMemoryApiCall", 3),
    ("NtAllocateVirtualMemoryApiCall", 3),
    ("FirewallInboundConnectionBlocked", 3),
    ("ScheduledTaskUpdated", 2),
    ("ProcessCreatedUsingWmiQuery", 2),
    ("ScheduledTaskCreated", 1),
    ("ServiceInstalled", 1),
    ("SmartScreenUrlWarning", 1),
    ("UsbDriveMounted", 1),
    ("AntivirusDetection", 1),
    ("AsrOfficeChildProcessAudited", 1),
];

fn image(name: &str) -> &'static Image {
    &IMAGES[images::find(name).unwrap_or(0)]
}

/// Fills the context of one `DeviceEvents` record.
pub(crate) fn build<'w>(ctx: &mut Ctx<'w>, world: &'w World, rng: &mut SmallRng) {
    let action = pick_w(rng, ACTIONS);
    ctx.action = action;
    let fixed = match action {
        "AntivirusScanCompleted" | "AntivirusDetection" => Some("MsMpEng.exe"),
        "PowerShellCommand" => Some("powershell.exe"),
        "DnsQueryResponse" | "AuditPolicyModification" | "FirewallInboundConnectionBlocked" => Some("svchost.exe"),
        "BrowserLaunchedToOpenUrl" | "ShellLinkCreateFileEvent" => {
            Some(pick(rng, &["explorer.exe", "OUTLOOK.EXE", "ms-teams.exe"]))
        }
        "ScheduledTaskCreated" | "ScheduledTaskUpdated" => {
            Some(pick(rng, &["svchost.exe", "schtasks.exe", "msiexec.exe"]))
        }
        "ProcessCreatedUsingWmiQuery" => Some("WmiPrvSE.exe"),
        "AsrOfficeChildProcessAudited" => Some("WINWORD.EXE"),
        "ServiceInstalled" => Some("services.exe"),
        _ => None,
    };
    match fixed {
        Some(name) => ctx.initiating_image(world, image(name), rng),
        None => ctx.initiating(world, Role::Created, rng),
    }
    let additional = match action {
        "NamedPipeEvent" => {
            let pipe = pick(
                rng,
                &[
                    "srvsvc",
                    "lsarpc",
                    "wkssvc",
                    "PSHost.134151234567890123.8244.DefaultAppDomain.powershell",
                    "mojo.8244.10564.1418375632409327815",
                    "chrome.sync.2992.14340.19877421",
                    "Winsock2\\CatalogChangeListener-3d4-0",
                ],
            );
            ctx.file = Some(FileObj {
                name: pipe.to_string(),
                path: format!("\\Device\\NamedPipe\\{pipe}"),
                ..FileObj::default()
            });
            Obj::new()
                .num("DesiredAccess", pick(rng, &[1_180_063, 1_179_785, 1_180_054]))
                .str("FileOperation", pick(rng, &["File opened", "Pipe created"]))
                .str("NamedPipeEnd", pick(rng, &["Client", "Server"]))
                .str("PipeName", &format!("\\Device\\NamedPipe\\{pipe}"))
                .str("RemoteClientsAccess", "AcceptRemote")
                .str("ShareMode", "Read, Write")
                .num("ThreadId", rng.random_range(1000..30000))
                .end()
        }
        "DnsQueryResponse" => {
            let host = pick_w(rng, REMOTE_HOSTS);
            ctx.net =
                Some(Net { remote_ip: "10.10.0.10".into(), remote_port: Some(53), protocol: "Udp", ..Net::default() });
            let answers = format!(
                "[{{\"DnsQueryType\":1,\"Address\":\"{}\"}},{{\"DnsQueryType\":1,\"Address\":\"{}\"}}]",
                public_ip(rng),
                public_ip(rng)
            );
            Obj::new().str("DnsQueryString", host).raw("DnsQueryResult", &answers).end()
        }
        "OpenProcessApiCall"
        | "ReadProcessMemoryApiCall"
        | "CreateRemoteThreadApiCall"
        | "NtAllocateVirtualMemoryApiCall" => {
            let target = image(pick(
                rng,
                &["lsass.exe", "svchost.exe", "explorer.exe", "chrome.exe", "msedge.exe", "MsMpEng.exe"],
            ));
            let created = ctx.ts - rng.random_range(TICKS_PER_SEC..86_400 * TICKS_PER_SEC);
            let p = ctx.process(world, target, created, rng);
            ctx.file = Some(FileObj {
                name: target.file.into(),
                path: p.path.clone(),
                seed: p.digest_seed(),
                size: Some(target.size),
                ..FileObj::default()
            });
            ctx.procs[0] = Some(p);
            match action {
                "OpenProcessApiCall" => {
                    Obj::new().num("DesiredAccess", pick(rng, &[4096, 5136, 2_097_151, 1040])).end()
                }
                _ => "null".into(),
            }
        }
        "PowerShellCommand" => {
            let cmd = pick(
                rng,
                &[
                    "Get-Process",
                    "Get-Item",
                    "Import-Module",
                    "Get-ChildItem",
                    "Invoke-WebRequest",
                    "ConvertTo-Json",
                    "Set-ItemProperty",
                    "Get-WmiObject",
                    "Out-Null",
                    "Test-Path",
                    "Get-ScheduledTask",
                    "Start-Process",
                ],
            );
            Obj::new().str("Command", cmd).end()
        }
        "BrowserLaunchedToOpenUrl" | "SmartScreenUrlWarning" => {
            let url = format!("https://{}{}", pick_w(rng, REMOTE_HOSTS), pick(rng, URL_PATHS));
            ctx.net = Some(Net { remote_url: url, ..Net::default() });
            if action == "SmartScreenUrlWarning" {
                Obj::new().str("Experience", pick(rng, &["Malicious", "Phishing", "Untrusted"])).end()
            } else {
                "{}".into()
            }
        }
        "ShellLinkCreateFileEvent" => {
            let mut f = doc_file(ctx, rng);
            let target = f.path.clone();
            f.name = format!("{}.lnk", f.name);
            f.path = format!("C:\\Users\\{}\\AppData\\Roaming\\Microsoft\\Windows\\Recent\\{}", ctx.user.name, f.name);
            f.seed = fnv(&f.path);
            ctx.file = Some(f);
            Obj::new()
                .str("ShellLinkIconPath", "")
                .str("ShellLinkShowCommand", "SW_SHOWNORMAL")
                .str("ShellLinkTarget", &target)
                .str("ShellLinkWorkingDirectory", "")
                .end()
        }
        "LdapSearch" => {
            let filter = pick(
                rng,
                &[
                    "(objectClass=*)",
                    "(&(objectCategory=person)(objectClass=user)(sAMAccountName=*))",
                    "(&(objectclass=computer)(servicePrincipalName=*MSSQLSvc*))",
                    "(&(objectCategory=group)(cn=Domain Admins))",
                ],
            );
            Obj::new()
                .raw("AttributeList", "[\"objectClass\",\"distinguishedName\",\"sAMAccountName\"]")
                .str("DistinguishedName", "DC=corp,DC=contoso,DC=com")
                .str("ScopeOfSearch", pick(rng, &["Base", "SubTree", "OneLevel"]))
                .str("SearchFilter", filter)
                .end()
        }
        "AsrLsassCredentialTheftAudited" | "AsrOfficeChildProcessAudited" => {
            let rule = if action == "AsrOfficeChildProcessAudited" {
                "d4f940ab-401b-4efc-aadc-ad5f3c50688a"
            } else {
                "9e6c4e1f-7d60-472f-ba1a-a39ef669e4b2"
            };
            if let Some(p) = &ctx.procs[1] {
                ctx.file = Some(FileObj {
                    name: p.img.file.into(),
                    path: p.path.clone(),
                    seed: p.digest_seed(),
                    ..FileObj::default()
                });
            }
            Obj::new().bool("IsAudit", true).str("RuleId", rule).end()
        }
        "DpapiAccessed" => Obj::new()
            .str("DataDescription", pick(rng, &["Google Chrome", "Microsoft Edge", "Credentials", ""]))
            .str("OperationType", "SPCryptUnprotect")
            .end(),
        "AntivirusScanCompleted" => Obj::new()
            .str("Domain", "NT AUTHORITY")
            .str("ScanId", &format!("{{{}}}", guid(rng.random()).to_ascii_uppercase()))
            .str("ScanParametersIndex", "1")
            .str("ScanTypeIndex", pick(rng, &["Quick", "Full", "Custom"]))
            .str("User", "NETWORK SERVICE")
            .end(),
        "AntivirusDetection" => {
            ctx.file = Some(doc_file(ctx, rng));
            Obj::new()
                .str(
                    "ThreatName",
                    pick(
                        rng,
                        &[
                            "Trojan:Win32/Wacatac.B!ml",
                            "PUA:Win32/Presenoker",
                            "Trojan:JS/Nemucod!MSR",
                            "HackTool:Win32/Mimikatz.D",
                        ],
                    ),
                )
                .bool("WasRemediated", rng.random_bool(0.8))
                .bool("WasExecutingWhileDetected", false)
                .str("Category", "Trojan")
                .end()
        }
        "AuditPolicyModification" => Obj::new()
            .str("AuditPolicyChanges", "%%8448, %%8450")
            .str("CategoryId", "%%8273")
            .str("SubcategoryGuid", "0cce9217-69ae-11d9-bed3-505054503030")
            .str("SubcategoryId", "%%12546")
            .end(),
        "FirewallInboundConnectionBlocked" => {
            ctx.net = Some(Net {
                remote_ip: lan_ip(rng),
                remote_port: Some(rng.random_range(49_152..65_535)),
                local_ip: ctx.device.ip.clone(),
                local_port: Some(pick(rng, &[445, 135, 5985, 3389])),
                protocol: "Tcp",
                ..Net::default()
            });
            "null".into()
        }
        "ScheduledTaskCreated" | "ScheduledTaskUpdated" => task(ctx, rng),
        "ProcessCreatedUsingWmiQuery" => Obj::new()
            .str("Namespace", "root\\cimv2")
            .str("Query", "SELECT * FROM Win32_Process WHERE Name = 'powershell.exe'")
            .end(),
        "ServiceInstalled" => Obj::new()
            .str(
                "ServiceName",
                pick(
                    rng,
                    &[
                        "ContosoAgent",
                        "GoogleUpdaterService131.0.6778.86",
                        "edgeupdate",
                        "PSEXESVC",
                        "MozillaMaintenance",
                    ],
                ),
            )
            .str("ServiceAccount", "LocalSystem")
            .num("ServiceStartType", 2)
            .num("ServiceType", 16)
            .end(),
        "UsbDriveMounted" => Obj::new()
            .str("DriveLetter", "E:")
            .str("BusType", "USB")
            .str("Manufacturer", pick(rng, &["SanDisk", "Kingston", "Samsung"]))
            .str("ProductName", pick(rng, &["Ultra", "DataTraveler 3.0", "Flash Drive FIT"]))
            .str("SerialNumber", &format!("4C530001{}", rng.random_range(100_000_000u64..999_999_999)))
            .num("Volume", rng.random_range(1..4))
            .end(),
        _ => "null".into(),
    };
    ctx.additional = (additional != "null").then_some(additional);
}

fn task(ctx: &Ctx<'_>, rng: &mut SmallRng) -> String {
    let name = pick(
        rng,
        &[
            "\\Microsoft\\Windows\\UpdateOrchestrator\\Schedule Scan",
            "\\Contoso\\Inventory Collection",
            "\\GoogleSystem\\GoogleUpdater\\GoogleUpdaterTaskSystem131.0.6778.86{5B0A7F1E-3C2D-4B7A-9E2F-8A1D6C3B4E5F}",
            "\\OneDrive Standalone Update Task-S-1-5-21",
            "\\Microsoft\\Office\\Office Automatic Updates 2.0",
        ],
    );
    let mut start = String::new();
    push_time(&mut start, ctx.ts + 3600 * TICKS_PER_SEC, crate::json::TimeStyle::Seconds);
    start.pop();
    let command = ctx.procs[1].as_ref().map_or("C:\\Windows\\system32\\sc.exe", |p| p.path.as_str());
    let body = pick(rng, POWERSHELL_SNIPPETS);
    let xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-16\"?>\r\n<Task version=\"1.3\" xmlns=\"http://schemas.microsoft.com/windows/2004/02/mit/task\">\r\n  <RegistrationInfo>\r\n    <URI>{name}</URI>\r\n  </RegistrationInfo>\r\n  <Triggers>\r\n    <CalendarTrigger>\r\n      <StartBoundary>{start}</StartBoundary>\r\n      <ScheduleByDay><DaysInterval>1</DaysInterval></ScheduleByDay>\r\n    </CalendarTrigger>\r\n  </Triggers>\r\n  <Principals>\r\n    <Principal id=\"Author\">\r\n      <UserId>S-1-5-18</UserId>\r\n      <RunLevel>HighestAvailable</RunLevel>\r\n    </Principal>\r\n  </Principals>\r\n  <Actions Context=\"Author\">\r\n    <Exec>\r\n      <Command>{command}</Command>\r\n      <Arguments>-NoProfile -Command \"{body}\"</Arguments>\r\n    </Exec>\r\n  </Actions>\r\n</Task>"
    );
    Obj::new().str("TaskName", name).str("TaskContent", &xml).end()
}
