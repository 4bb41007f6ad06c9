//! Columns of the lower-volume tables (identity, cloud apps, alerts and behaviors, mail,
//! inventory and TVM), written by name. [`prepare`] draws what a record's columns must agree on
//! (the alert, the mail, the client IP, the cloud app); [`write`] writes one column, falling
//! back on the column's name and type for anything not known here.

use rand::{Rng, rngs::SmallRng};

use crate::{
    columns::Typed,
    images::Role,
    inventory,
    json::{Obj, TICKS_PER_SEC, fnv, guid, push_guid, push_hex},
    mail::{self, Mail},
    pools::{CITIES, ISPS, REMOTE_HOSTS, URL_PATHS},
    scenario::{Ctx, FileObj, doc_file, public_ip},
    world::{World, pick, pick_w},
};
use defender_core::ColumnType;

/// What the columns of one record of a lower-volume table must agree on.
#[derive(Debug, Default)]
pub(crate) struct Extra {
    pub mail: Option<Mail>,
    pub alert: Option<&'static AlertKind>,
    pub alert_id: String,
    pub ip: String,
    pub city: usize,
    pub isp: &'static str,
    /// (application, application id) of cloud-app and identity events.
    pub app: (&'static str, i64),
    pub software: usize,
    /// Evidence or behavior entity type (`File`, `Process`, `User`, ...).
    pub entity: &'static str,
}

/// (title, category, MITRE techniques, service source, detection source, severity)
#[derive(Debug)]
pub(crate) struct AlertKind(
    pub &'static str,
    pub &'static str,
    pub &'static str,
    pub &'static str,
    pub &'static str,
    pub &'static str,
);

const ALERTS: &[AlertKind] = &[
    AlertKind(
        "Suspicious PowerShell command line",
        "Execution",
        "[\"PowerShell (T1059.001)\",\"Obfuscated Files or Information (T1027)\"]",
        "Microsoft Defender for Endpoint",
        "EDR",
        "Medium",
    ),
    AlertKind(
        "'Wacatac' malware was prevented",
        "Malware",
        "[]",
        "Microsoft Defender for Endpoint",
        "Antivirus",
        "Informational",
    ),
    AlertKind(
        "Suspicious access to LSASS service",
        "CredentialAccess",
        "[\"OS Credential Dumping (T1003)\",\"LSASS Memory (T1003.001)\"]",
        "Microsoft Defender for Endpoint",
        "EDR",
        "High",
    ),
    AlertKind(
        "Email messages containing malicious URL removed after delivery",
        "InitialAccess",
        "[\"Phishing (T1566)\",\"Spearphishing Link (T1566.002)\"]",
        "Microsoft Defender for Office 365",
        "Microsoft Defender for Office 365",
        "Informational",
    ),
    AlertKind(
        "User and IP address reconnaissance (SMB)",
        "Discovery",
        "[\"Account Discovery (T1087)\",\"Domain Account (T1087.002)\"]",
        "Microsoft Defender for Identity",
        "Microsoft Defender for Identity",
        "Medium",
    ),
    AlertKind(
        "Impossible travel activity",
        "InitialAccess",
        "[\"Valid Accounts (T1078)\"]",
        "Microsoft Defender for Cloud Apps",
        "Microsoft Defender for Cloud Apps",
        "Medium",
    ),
    AlertKind(
        "Anomalous scheduled task created",
        "Persistence",
        "[\"Scheduled Task (T1053.005)\"]",
        "Microsoft Defender for Endpoint",
        "EDR",
        "Low",
    ),
    AlertKind(
        "Unfamiliar sign-in properties",
        "InitialAccess",
        "[]",
        "Microsoft Entra ID Protection",
        "Microsoft Entra ID Protection",
        "Low",
    ),
];

const CLOUD_APPS: &[(&str, i64)] = &[
    ("Microsoft Exchange Online", 20893),
    ("Microsoft SharePoint Online", 20892),
    ("Microsoft OneDrive for Business", 15600),
    ("Microsoft Teams", 11394),
    ("Microsoft Azure", 12260),
    ("Microsoft 365", 11161),
    ("Box", 10489),
    ("Salesforce", 11114),
];

/// Draws what the record's columns share; also the ActionType for tables that have one.
pub(crate) fn prepare<'w>(ctx: &mut Ctx<'w>, world: &'w World, rng: &mut SmallRng) {
    let t = ctx.table;
    let mut e = Extra {
        city: ctx.user.city,
        isp: pick(rng, ISPS),
        software: rng.random_range(0..usize::MAX),
        ..Extra::default()
    };
    e.ip = if t.starts_with("Identity") { ctx.device.ip.clone() } else { public_ip(rng) };
    e.app = pick(rng, CLOUD_APPS);
    if rng.random_bool(0.1) {
        e.city = rng.random_range(0..CITIES.len());
    }
    if t.starts_with("Email") || t == "UrlClickEvents" || t == "AlertEvidence" || t == "BehaviorEntities" {
        e.mail = Some(mail::message(world, rng));
    }
    if t.starts_with("Alert") || t.starts_with("Behavior") {
        let a = &ALERTS[rng.random_range(0..ALERTS.len())];
        e.alert = Some(a);
        let mut id = String::from(match a.3 {
            "Microsoft Defender for Endpoint" => "da",
            "Microsoft Defender for Office 365" => "fa",
            "Microsoft Defender for Identity" => "aa",
            _ => "ca",
        });
        if t.starts_with("Behavior") {
            id.replace_range(..2, "ba");
            push_hex(&mut id, rng.random(), 32);
        } else {
            id.push_str(&(ctx.ts as u64 + 621_355_968_000_000_000).to_string());
            id.push_str("_-");
            id.push_str(&rng.random_range(100_000_000..2_000_000_000u64).to_string());
        }
        e.alert_id = id;
        e.entity = match a.3 {
            "Microsoft Defender for Office 365" => pick(rng, &["MailMessage", "User", "Url", "Mailbox"]),
            "Microsoft Defender for Identity" => pick(rng, &["User", "Machine", "Ip"]),
            "Microsoft Defender for Endpoint" => {
                pick(rng, &["Process", "File", "Machine", "User", "Ip", "Url", "RegistryValue"])
            }
            _ => pick(rng, &["User", "Ip", "CloudApplication"]),
        };
        match e.entity {
            "File" => ctx.file = Some(doc_file(ctx, rng)),
            "Process" => {
                ctx.initiating(world, Role::Created, rng);
                ctx.file = ctx.procs[1].as_ref().map(|p| FileObj {
                    name: p.img.file.to_string(),
                    path: p.path.clone(),
                    seed: p.digest_seed(),
                    size: Some(p.img.size),
                    ..FileObj::default()
                });
            }
            _ => {}
        }
    }
    ctx.action = match t {
        "IdentityLogonEvents" => pick_w(rng, &[("LogonSuccess", 80), ("LogonFailed", 20)]),
        "IdentityQueryEvents" => {
            pick_w(rng, &[("LDAP query", 50), ("DNS query", 30), ("SAMR query", 15), ("SamrQuery", 5)])
        }
        "IdentityDirectoryEvents" => pick_w(
            rng,
            &[
                ("Account Password changed", 20),
                ("Group Membership changed", 20),
                ("Directory Services replication", 5),
                ("Account Disabled", 5),
                ("Potential lateral movement path identified", 20),
                ("Device Operating System changed", 10),
                ("Account Unlock changed", 5),
            ],
        ),
        "CloudAppEvents" => pick_w(
            rng,
            &[
                ("MailItemsAccessed", 30),
                ("FileAccessed", 20),
                ("FileModified", 10),
                ("FileDownloaded", 8),
                ("MessageSent", 10),
                ("Send", 6),
                ("UserLoggedIn", 10),
                ("FileUploaded", 6),
                ("Add member to role.", 1),
                ("Consent to application.", 1),
            ],
        ),
        "EmailPostDeliveryEvents" => pick_w(
            rng,
            &[("Phish ZAP", 40), ("Malware ZAP", 10), ("Manual Remediation", 30), ("Redelivery", 10), ("Spam ZAP", 10)],
        ),
        "UrlClickEvents" => pick_w(
            rng,
            &[("ClickAllowed", 85), ("ClickBlocked", 10), ("UrlScanInProgress", 3), ("ClickBlockedByTenantPolicy", 2)],
        ),
        "BehaviorInfo" | "BehaviorEntities" => pick(
            rng,
            &[
                "ImpossibleTravelActivity",
                "UnusualAddionOfCredentialsToAnOauthApp",
                "MassDownload",
                "SuspiciousInboxManipulationRule",
                "MultipleFailedLoginAttempts",
            ],
        ),
        _ => "",
    };
    // Post-delivery actions and blocked clicks are about bad mail.
    if let Some(m) = &mut e.mail {
        let threat = match ctx.action {
            "Phish ZAP" | "Manual Remediation" | "Redelivery" | "ClickBlocked" | "ClickBlockedByTenantPolicy" => {
                "Phish"
            }
            "Malware ZAP" => "Malware",
            "Spam ZAP" => "Spam",
            _ => m.threat,
        };
        if threat != m.threat {
            m.threat = threat;
            m.direction = "Inbound";
        }
    }
    ctx.extra = e;
}

/// Evidence and behavior entities fill only the columns of their entity type: Some(false) for
/// a column of another type.
fn entity_allows(entity: &str, name: &str) -> Option<bool> {
    Some(match name {
        "FileName" | "FolderPath" | "SHA1" | "SHA256" | "FileSize" | "ThreatFamily" => {
            matches!(entity, "File" | "Process")
        }
        "ProcessCommandLine" => entity == "Process",
        "RemoteIP" => entity == "Ip",
        "RemoteUrl" => entity == "Url",
        "AccountName" | "AccountDomain" | "AccountSid" | "AccountObjectId" | "AccountUpn" => {
            matches!(entity, "User" | "Mailbox" | "Process")
        }
        "DeviceId" | "DeviceName" | "LocalIP" => matches!(entity, "Machine" | "Process" | "File" | "Ip"),
        "NetworkMessageId" | "EmailSubject" | "EmailClusterId" => matches!(entity, "MailMessage" | "Url"),
        "Application" | "ApplicationId" | "OAuthApplicationId" => entity == "CloudApplication",
        "RegistryKey" | "RegistryValueName" | "RegistryValueData" => entity == "RegistryValue",
        _ => return None,
    })
}

/// Writes the column `name` of `ctx.table`.
pub(crate) fn write(name: &str, ctx: &Ctx<'_>, world: &World, rng: &mut SmallRng, v: &mut Typed<'_>) {
    let t = ctx.table;
    if matches!(t, "AlertEvidence" | "BehaviorEntities") && entity_allows(ctx.extra.entity, name) == Some(false) {
        return if v.ty == ColumnType::String { v.str("") } else { v.null() };
    }
    let handled = if t.starts_with("Email") || t == "UrlClickEvents" {
        mail::write(name, ctx, rng, v)
    } else if t.starts_with("DeviceTvm")
        || matches!(t, "DeviceInfo" | "DeviceNetworkInfo" | "DeviceFileCertificateInfo")
    {
        inventory::write(name, ctx, world, rng, v)
    } else {
        false
    };
    let handled = handled || (t == "IdentityInfo" && identity_info(name, ctx, world, rng, v));
    if !handled && !common(name, ctx, rng, v) {
        fallback(name, ctx, rng, v);
    }
}

fn identity_info(name: &str, ctx: &Ctx<'_>, world: &World, rng: &mut SmallRng, v: &mut Typed<'_>) -> bool {
    let u = ctx.user;
    match name {
        "Type" => v.str("User"),
        "DistinguishedName" => {
            v.str(&format!("CN={},OU=Users,OU={},DC=corp,DC=contoso,DC=com", u.display, u.department))
        }
        "CloudSid" => v.str(&format!(
            "S-1-12-1-{}-{}-{}-{}",
            fnv(&u.upn) % 4_000_000_000,
            fnv(&u.sid) % 4_000_000_000,
            fnv(&u.name) % 4_000_000_000,
            fnv(&u.display) % 4_000_000_000
        )),
        "GivenName" => v.str(u.given),
        "Surname" => v.str(u.surname),
        "Department" => v.str(u.department),
        "JobTitle" => v.str(u.title),
        "EmailAddress" | "SipProxyAddress" => v.str(&u.upn),
        "Address" | "Manager" | "State" => v.str(""),
        "IsAccountEnabled" => v.bool(rng.random_bool(0.97)),
        "Phone" => v.str(&format!("+1 425 555 {:04}", fnv(&u.upn) % 10_000)),
        "CriticalityLevel" => v.int(if u.title.contains("Chief") || u.title.contains("Administrator") { 3 } else { 0 }),
        "ChangeSource" => v.str(pick(rng, &["ActiveDirectory", "AzureActiveDirectory", "Hybrid"])),
        "BlastRadius" => v.str(pick(rng, &["Low", "Low", "Medium", "High"])),
        "CompanyName" => v.str("Contoso Ltd"),
        "DeletedDateTime" => v.null(),
        "CreatedDateTime" => v.time(ctx.ts - (fnv(&u.upn) % 2000) as i64 * 86_400 * TICKS_PER_SEC),
        "EmployeeId" => v.str(&format!("{}", 100_000 + fnv(&u.upn) % 900_000)),
        "OtherMailAddresses" | "PrivilegedEntraPimRoles" | "Tags" => v.json("[]"),
        "AssignedRoles" => v.json(if u.title.contains("Administrator") {
            "[\"Global Reader\",\"Helpdesk Administrator\"]"
        } else {
            "[]"
        }),
        "RiskLevel" => v.str(pick(rng, &["", "", "Low", "Medium"])),
        "RiskLevelDetails" => v.str("none"),
        "RiskStatus" => v.str("None"),
        "TenantId" => v.str(&world.tenant),
        "SourceSystem" => v.str("ActiveDirectory"),
        "OnPremObjectId" => v.str(&guid(fnv(&u.sid))),
        "TenantMembershipType" => v.str("Member"),
        "UserAccountControl" => v.str("[\"NormalAccount\"]"),
        "IdentityEnvironment" => v.str("Hybrid"),
        "SourceProviders" => v.json("[\"ActiveDirectory\",\"AzureActiveDirectory\"]"),
        "GroupMembership" => v.json(&format!("[\"{}\",\"VPN Users\",\"All Staff\"]", u.department)),
        _ => return false,
    }
    true
}

fn common(name: &str, ctx: &Ctx<'_>, rng: &mut SmallRng, v: &mut Typed<'_>) -> bool {
    let t = ctx.table;
    let identity = t.starts_with("Identity");
    let e = &ctx.extra;
    let u = ctx.user;
    let (city, cc, country) = CITIES[e.city];
    match name {
        "ActionType" => v.str(ctx.action),
        "DeviceId" => v.str(if t.starts_with("Device") || rng.random_bool(0.6) { &ctx.device.id } else { "" }),
        "DeviceName" if identity => {
            let short = ctx.device.name.split('.').next().unwrap_or_default().to_ascii_uppercase();
            v.str(&short)
        }
        "DeviceName" => v.str(&ctx.device.name),
        "AccountName" => v.str(&u.name),
        "AccountDomain" => v.str(if identity { "corp.contoso.com" } else { &u.domain }),
        "AccountSid" | "OnPremSid" => v.str(&u.sid),
        "AccountUpn" => v.str(&u.upn),
        "TargetAccountUpn" => v.str(if rng.random_bool(0.5) { &u.upn } else { "" }),
        "AccountObjectId" | "AccountId" => v.str(&u.object_id),
        "AccountDisplayName" | "TargetAccountDisplayName" => v.str(&u.display),
        "IPAddress" => v.str(&e.ip),
        "Port" => v.int(rng.random_range(49_152..65_535)),
        "DestinationPort" => v.int(pick(rng, &[88, 389, 445, 135, 636, 3268])),
        "DestinationIPAddress" => v.str(pick(rng, &["10.10.0.10", "10.10.0.11"])),
        "DestinationDeviceName" => v.str(pick(rng, &["DC01", "DC02"])),
        "TargetDeviceName" => v.str(if rng.random_bool(0.3) { "FS01" } else { "" }),
        "Location" | "City" => v.str(city),
        "CountryCode" => v.str(cc),
        "Country" => v.str(country),
        "ISP" | "Isp" => v.str(e.isp),
        "OSPlatform" => v.str(ctx.device.os.0),
        "DeviceType" if identity || t == "CloudAppEvents" => v.str(pick(rng, &["Desktop", "Mobile", "Other", ""])),
        "Application" => v.str(if identity { pick(rng, &["Active Directory", "Microsoft Entra ID"]) } else { e.app.0 }),
        "ApplicationId" => v.int(e.app.1),
        "Protocol" => v.str(match ctx.action {
            "LDAP query" => "Ldap",
            "DNS query" => "Dns",
            "SAMR query" | "SamrQuery" => "Samr",
            _ => pick(rng, &["Kerberos", "Ntlm", "Kerberos", ""]),
        }),
        "LogonType" if t == "DeviceLogonEvents" => v.str(pick(
            rng,
            &[
                "Interactive",
                "Network",
                "Network",
                "RemoteInteractive",
                "Unlock",
                "Batch",
                "Service",
                "CachedInteractive",
            ],
        )),
        "LogonType" => {
            v.str(pick(rng, &["Resource access", "Credentials validation", "Interactive", "Remote desktop"]))
        }
        "IsLocalAdmin" => v.bool(rng.random_bool(0.1)),
        "RequestProtocol" => v.str(if shared(ctx) { "Smb" } else { "Local" }),
        "RequestSourceIP" => v.str(&if shared(ctx) { crate::scenario::lan_ip(rng) } else { String::new() }),
        "RequestSourcePort" => v.opt_int(shared(ctx).then(|| rng.random_range(49_152..65_535))),
        "IsAzureInfoProtectionApplied" => v.bool(false),
        "SensitivityLabel" | "SensitivitySubLabel" => v.str(""),
        "FailureReason" => v.str(if ctx.action == "LogonFailed" {
            pick(rng, &["WrongPassword", "AccountLocked", "UnknownUser"])
        } else {
            ""
        }),
        "QueryType" => v.str(pick(rng, &["AllUsers", "AllGroups", "QueryUser", "A", "PTR", "Reverse"])),
        "QueryTarget" => v.str(pick(rng, &["Domain Admins", "contoso.com", "dc01.corp.contoso.com", "krbtgt", ""])),
        "Query" => v.str(pick(
            rng,
            &[
                "(&(objectCategory=person)(objectClass=user))",
                "(&(objectClass=group)(cn=Domain Admins))",
                "dc01.corp.contoso.com",
                "samr EnumerateUsers",
            ],
        )),
        "ReportId" => {
            let mut s = String::new();
            match t {
                "CloudAppEvents" => {
                    s.push_str(&rng.random_range(100_000_000..999_999_999u64).to_string());
                    s.push('_');
                    s.push_str(&e.app.1.to_string());
                    s.push('_');
                    push_guid(&mut s, rng.random());
                }
                _ => push_guid(&mut s, rng.random()),
            }
            v.str(&s)
        }
        "AdditionalFields" => v.json(&additional(ctx, rng)),
        "LocalIP" => v.str(&ctx.device.ip),
        "RemoteIP" => v.str(&public_ip(rng)),
        "RemoteUrl" => v.str(&format!("https://{}{}", pick_w(rng, REMOTE_HOSTS), pick(rng, URL_PATHS))),
        "FileName" => v.str(ctx.file.as_ref().map_or("", |f| f.name.as_str())),
        "FolderPath" => v.str(ctx.file.as_ref().map_or("", |f| f.path.as_str())),
        "SHA1" => v.hex(ctx.file.as_ref().map(|f| f.seed ^ 1), 40),
        "SHA256" => v.hex(ctx.file.as_ref().map(|f| f.seed ^ 2), 64),
        "FileSize" => v.opt_int(ctx.file.as_ref().and_then(|f| f.size).map(|s| s as i64)),
        "ProcessCommandLine" => v.str(ctx.procs[1].as_ref().map_or("", |p| p.cmdline.as_str())),
        "NetworkMessageId" => v.str(ctx.extra.mail.as_ref().map_or("", |m| m.network_message_id.as_str())),
        "EmailSubject" => v.str(ctx.extra.mail.as_ref().map_or("", |m| m.subject)),
        "RegistryKey" => v.str("HKEY_LOCAL_MACHINE\\SOFTWARE\\Microsoft\\Windows\\CurrentVersion\\Run"),
        "RegistryValueName" => v.str("WinSvcUpd"),
        "RegistryValueData" => v.str("powershell.exe -w hidden -nop -f C:\\ProgramData\\upd.ps1"),
        _ => return alert_or_cloud(name, ctx, rng, v).is_some(),
    }
    true
}

fn shared(ctx: &Ctx<'_>) -> bool {
    ctx.file.as_ref().is_some_and(|f| !f.share.is_empty())
}

/// Alert, behavior and cloud-app columns; `None` when `name` is none of them.
fn alert_or_cloud(name: &str, ctx: &Ctx<'_>, rng: &mut SmallRng, v: &mut Typed<'_>) -> Option<()> {
    let e = &ctx.extra;
    let a = e.alert.unwrap_or(&ALERTS[0]);
    match name {
        "AlertId" | "BehaviorId" => v.str(&e.alert_id),
        "Title" => v.str(a.0),
        "Category" => v.str(a.1),
        "Categories" => v.json(&format!("[\"{}\"]", a.1)),
        "AttackTechniques" => v.json(a.2),
        "ServiceSource" => v.str(a.3),
        "DetectionSource" => v.str(a.4),
        "Severity" => v.str(a.5),
        "Description" => v.str(&format!("{} involving {} on {}", a.0, ctx.user.upn, ctx.device.name)),
        "DataSources" => v.json(&format!("[\"{}\"]", a.3)),
        "EntityType" => v.str(e.entity),
        "EvidenceRole" | "EntityRole" => v.str(pick(rng, &["Impacted", "Related"])),
        "DetailedEntityRole" => v.str(pick(rng, &["[\"Source\"]", "[\"Destination\"]", "[\"Actor\"]"])),
        "EvidenceDirection" => v.str(pick(rng, &["Source", "Destination", ""])),
        "StartTime" => v.time(ctx.ts - rng.random_range(60..7200) * TICKS_PER_SEC),
        "EndTime" => v.time(ctx.ts),
        "ThreatFamily" => v.str(if a.1 == "Malware" { "Wacatac" } else { "" }),
        "OAuthApplicationId" | "OAuthAppId" => v.str(if rng.random_bool(0.2) { "5a95e683-08ad-424e-a441-1d1aec52c02c" } else { "" }),
        "EmailClusterId" => v.int(rng.random_range(1_000_000_000..999_999_999_999)),
        "CloudResource" | "CloudPlatform" | "ResourceType" | "ResourceID" | "SubscriptionId" => v.str(""),
        "AppInstanceId" => v.int(0),
        "IsAdminOperation" | "IsExternalUser" | "IsImpersonated" => v.bool(rng.random_bool(0.03)),
        "IsAnonymousProxy" => v.bool(rng.random_bool(0.005)),
        "UserAgent" => v.str(pick(rng, &[
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
            "Client=REST;Client=RESTSystem;;",
            "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.18129; Pro)",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
        ])),
        "ActivityType" => v.str(pick(rng, &["Run", "Read", "Edit", "Download", "Login", "Upload"])),
        "ActivityObjects" => v.json(&format!(
            "[{{\"Type\":\"Task\",\"Role\":\"Target object\",\"Name\":\"{}\"}},{{\"ApplicationId\":{},\"Type\":\"Account\",\"Role\":\"Actor\",\"Name\":\"{}\",\"Id\":\"{}\"}}]",
            ctx.action, e.app.1, ctx.user.display, ctx.user.object_id
        )),
        "ObjectName" => v.str(ctx.action),
        "ObjectType" => v.str(pick(rng, &["Task", "File", "Email", "Folder"])),
        "ObjectId" => v.str(""),
        "AccountType" => v.str(pick(rng, &["Regular", "Regular", "Regular", "Admin", "Application"])),
        "IPTags" => v.json(pick(rng, &["[]", "[\"Microsoft Azure\"]", "[\"Corporate\"]"])),
        "IPCategory" => v.str(pick(rng, &["", "Corporate", "Cloud provider"])),
        "UserAgentTags" | "UncommonForUser" => v.json("[]"),
        "LastSeenForUser" => v.json(&format!("{{\"ActionType\":{},\"OSPlatform\":{},\"ISP\":{}}}", rng.random_range(0..30), rng.random_range(0..30), rng.random_range(0..30))),
        "AuditSource" => v.str("Defender for Cloud Apps app connector"),
        "SessionData" => v.json(&format!("{{\"InteractiveSessionId\":\"{}\"}}", guid(rng.random()))),
        "RawEventData" => v.json(&raw_event(ctx, rng)),
        _ => return None,
    }
    Some(())
}

fn raw_event(ctx: &Ctx<'_>, rng: &mut SmallRng) -> String {
    let mut creation = String::new();
    crate::json::push_time(&mut creation, ctx.ts - ctx.ts % TICKS_PER_SEC, crate::json::TimeStyle::Ticks);
    Obj::new()
        .str("OrganizationId", &ctx.device.aad_id)
        .str("CreationTime", &creation)
        .num("RecordType", pick(rng, &[2, 6, 15, 50, 25]))
        .str("Operation", ctx.action)
        .num("UserType", 0)
        .str("Workload", pick(rng, &["Exchange", "SharePoint", "OneDrive", "MicrosoftTeams", "AzureActiveDirectory"]))
        .str("UserId", &ctx.user.upn)
        .str("ClientIPAddress", &ctx.extra.ip)
        .str("ResultStatus", "Succeeded")
        .str("Id", &guid(rng.random()))
        .num("OperationCount", rng.random_range(1..20))
        .str("AppId", "00000003-0000-0000-c000-000000000000")
        .end()
}

/// `AdditionalFields` of the identity, cloud, alert and behavior tables.
fn additional(ctx: &Ctx<'_>, rng: &mut SmallRng) -> String {
    match ctx.table {
        "IdentityLogonEvents" => Obj::new()
            .str("Pass-through authentication", "false")
            .str(
                "Spns",
                pick(rng, &["krbtgt/CORP.CONTOSO.COM", "cifs/FS01.corp.contoso.com", "ldap/DC01.corp.contoso.com"]),
            )
            .str("ACTOR.DEVICE", &ctx.device.name)
            .end(),
        "IdentityDirectoryEvents" => Obj::new()
            .str("TARGET_OBJECT.USER", &ctx.user.display)
            .str("TO.GROUP", pick(rng, &["Finance-RW", "VPN Users", "Domain Admins"]))
            .str("ACTOR.ACCOUNT", "svc-idm")
            .end(),
        "IdentityQueryEvents" => {
            Obj::new().str("SourceComputerOperatingSystemType", "windows").num("Count", rng.random_range(1..50)).end()
        }
        "CloudAppEvents" => Obj::new().bool("IsSatelliteProvider", false).end(),
        _ if ctx.extra.alert.is_some() => Obj::new().str("Name", &ctx.user.display).str("Upn", &ctx.user.upn).end(),
        _ => "{}".to_string(),
    }
}

/// Anything else: something plausible for the column's name and type.
fn fallback(name: &str, ctx: &Ctx<'_>, rng: &mut SmallRng, v: &mut Typed<'_>) {
    match v.ty {
        ColumnType::Datetime => v.time(ctx.ts - rng.random_range(0..30 * 86_400) * TICKS_PER_SEC),
        ColumnType::Bool => v.bool(rng.random_bool(0.2)),
        ColumnType::Int => v.int(rng.random_range(0..10)),
        ColumnType::Long => v.int(rng.random_range(0..100_000)),
        ColumnType::Real => v.real(rng.random_range(0.0..10.0)),
        ColumnType::Guid => v.str(&guid(rng.random())),
        ColumnType::Dynamic => v.json("[]"),
        ColumnType::String => {
            if name.ends_with("Id") || name.ends_with("Guid") {
                v.str(&guid(fnv(name) ^ rng.random_range(0..64)))
            } else if name.ends_with("Url") {
                v.str(&format!("https://{}{}", pick_w(rng, REMOTE_HOSTS), pick(rng, URL_PATHS)))
            } else if name.ends_with("IP") || name.ends_with("IPAddress") {
                v.str(&public_ip(rng))
            } else if name.ends_with("Time") || name.ends_with("Date") {
                v.time(ctx.ts - rng.random_range(0..30 * 86_400) * TICKS_PER_SEC)
            } else {
                v.str("")
            }
        }
    }
}
