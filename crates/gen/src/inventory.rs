//! Inventory-like tables: `DeviceInfo`, `DeviceNetworkInfo`, `DeviceFileCertificateInfo` and the
//! Defender Vulnerability Management (`DeviceTvm*`) snapshots: software, vulnerabilities,
//! secure-configuration assessments, browser extensions, certificates, firmware.

use rand::{Rng, rngs::SmallRng};

use crate::{
    columns::Typed,
    json::{Obj, TICKS_PER_SEC, fnv, guid, push_hex, push_hex_upper},
    scenario::Ctx,
    world::{DNS_SUFFIX, World, pick},
};

/// (vendor, product, version, fixed in)
const SOFTWARE: &[(&str, &str, &str, &str)] = &[
    ("microsoft", "edge_chromium-based", "131.0.2903.70", "131.0.2903.86"),
    ("google", "chrome", "131.0.6778.86", "131.0.6778.108"),
    ("mozilla", "firefox", "133.0.0.8876", "133.0.3"),
    ("microsoft", "office", "16.0.18129.20158", "16.0.18227.20152"),
    ("adobe", "acrobat_reader_dc", "24.4.20272.0", "24.5.20320.0"),
    ("7-zip", "7-zip", "24.08.0.0", "24.09"),
    ("oracle", "jre", "8.0.4310.10", "8.0.4410.7"),
    ("microsoft", "windows_11", "10.0.22631.4541", "10.0.22631.4602"),
    ("zoom", "zoom", "6.2.11.50207", "6.3.0"),
    ("notepad-plus-plus", "notepad++", "8.6.9.0", "8.7.1"),
    ("python", "python", "3.12.7.0", "3.12.8"),
    ("git-scm", "git", "2.47.1.1", "2.47.1.2"),
];

/// (id, category, subcategory, impact, name)
const CONFIGS: &[(&str, &str, &str, f64, &str)] = &[
    ("scid-2010", "Security controls", "Antivirus", 9.0, "Turn on real-time protection"),
    ("scid-2011", "Security controls", "Antivirus", 8.0, "Update Microsoft Defender Antivirus definitions"),
    ("scid-91", "Security controls", "Windows Defender Firewall", 8.0, "Turn on Microsoft Defender Firewall"),
    ("scid-2090", "Security controls", "BitLocker", 7.0, "Encrypt all BitLocker-supported drives"),
    ("scid-5001", "Accounts", "User rights", 6.0, "Set 'Minimum password length' to '14 or more characters'"),
    ("scid-33", "OS", "Network", 5.0, "Disable 'Enumerate administrator accounts on elevation'"),
    ("scid-6095", "Application", "Google Chrome", 3.0, "Block third party cookies"),
];

/// Writes an inventory column; false when `name` is not one.
pub(crate) fn write(name: &str, ctx: &Ctx<'_>, world: &World, rng: &mut SmallRng, v: &mut Typed<'_>) -> bool {
    let d = ctx.device;
    let sw = SOFTWARE[ctx.extra.software % SOFTWARE.len()];
    let cfg = CONFIGS[ctx.extra.software % CONFIGS.len()];
    let cve = format!("CVE-2026-{}", 20_000 + ctx.extra.software % 30_000);
    let user = &world.users[d.user];
    match name {
        // DeviceInfo
        "ClientVersion" => v.str("10.8760.22621.1010"),
        "PublicIP" => v.str(&d.public_ip),
        "OSArchitecture" => v.str("64-bit"),
        "OSBuild" => v.int(i64::from(d.os.2)),
        "OsBuildRevision" => v.str(&d.os.3.to_string()),
        "OSVersion" => v.str(d.os.1),
        "OSVersionInfo" => v.str(match d.os.2 {
            26100 => "24H2",
            22631 => "23H2",
            19045 => "22H2",
            _ => "",
        }),
        "OSDistribution" => v.str(if d.server { "Server" } else { "" }),
        "IsAzureADJoined" => v.bool(!d.server),
        "JoinType" => v.str(if d.server { "Domain Joined" } else { "Hybrid Azure AD Join" }),
        "AadDeviceId" => v.str_or_null(if d.server { "" } else { &d.aad_id }),
        "LoggedOnUsers" => v.json(&format!("[{{\"UserName\":\"{}\",\"DomainName\":\"CONTOSO\",\"Sid\":\"{}\"}}]", user.name, user.sid)),
        "OnboardingStatus" => v.str("Onboarded"),
        "DeviceCategory" => v.str("Endpoint"),
        "DeviceType" => v.str(if d.server { "Server" } else { "Workstation" }),
        "Model" => v.str(d.model.0),
        "Vendor" => v.str(d.model.1),
        "IsInternetFacing" => v.bool(d.server && rng.random_bool(0.05)),
        "SensorHealthState" => v.str(pick(rng, &["Active", "Active", "Active", "Active", "Inactive", "ImpairedCommunication"])),
        "IsExcluded" | "IsTransient" => v.bool(false),
        "ExposureLevel" => v.str(pick(rng, &["Low", "Medium", "Medium", "High"])),
        "AssetValue" => v.str(if d.server { "High" } else { "Normal" }),
        "DeviceManualTags" | "DeviceDynamicTags" => v.str(if d.server { "[\"Tier1\"]" } else { "[]" }),
        "ConnectivityType" => v.str("Streamlined"),
        "HardwareUuid" => v.str(&guid(fnv(&d.id))),
        "DiscoverySources" => v.str("[\"MDE\"]"),
        "DeviceRoles" => v.str(if d.server { "[\"Server\"]" } else { "[]" }),
        "MergedDeviceIds" | "MergedToDeviceId" | "RegistryDeviceTag" | "DeviceSubtype" | "ExclusionReason" | "HostDeviceId"
        | "AzureResourceId" | "AwsResourceName" | "GcpFullResourceName" | "CloudPlatforms" | "AzureVmId"
        | "AzureVmSubscriptionId" | "MitigationStatus" | "Site" | "DlpInfo" => v.str(""),
        // DeviceNetworkInfo
        "NetworkAdapterName" => v.str(if d.server { "Ethernet0" } else { pick(rng, &["Ethernet", "Wi-Fi"]) }),
        "MacAddress" => v.str(&d.mac),
        "NetworkAdapterType" => v.str(if d.server { "Ethernet" } else { "Wireless80211" }),
        "NetworkAdapterStatus" => v.str("Up"),
        "TunnelType" => v.str("None"),
        "ConnectedNetworks" => v.str(&format!("[{{\"Name\":\"{DNS_SUFFIX}\",\"Description\":\"{DNS_SUFFIX}\",\"IsConnectedToInternet\":true,\"Category\":\"Domain\"}}]")),
        "DnsAddresses" => v.str("[\"10.10.0.10\",\"10.10.0.11\"]"),
        "IPv4Dhcp" => v.str("10.10.0.5"),
        "IPv6Dhcp" => v.str(""),
        "DefaultGateways" => v.str(&format!("[\"{}.1\"]", d.ip.rsplit_once('.').map_or("10.0.0", |p| p.0))),
        "IPAddresses" => v.str(&format!(
            "[{{\"IPAddress\":\"{}\",\"SubnetPrefix\":24,\"AddressType\":\"Private\"}},{{\"IPAddress\":\"{}\",\"SubnetPrefix\":64,\"AddressType\":\"LinkLocal\"}}]",
            d.ip, d.ipv6
        )),
        "NetworkAdapterVendor" => v.str(pick(rng, &["Intel Corporation", "Realtek", "Microsoft"])),
        "NetworkAdapterDnsSuffix" => v.str(DNS_SUFFIX),
        // DeviceFileCertificateInfo
        "IsSigned" | "IsTrusted" => v.bool(true),
        "SignatureType" => v.str(pick(rng, &["Embedded", "Catalog"])),
        "Signer" => v.str(pick(rng, &["Microsoft Windows", "Microsoft Corporation", "Google LLC", "Zoom Video Communications, Inc."])),
        "Issuer" => v.str(pick(rng, &["Microsoft Windows Production PCA 2011", "Microsoft Code Signing PCA 2011", "DigiCert Trusted G4 Code Signing RSA4096 SHA384 2021 CA1"])),
        "SignerHash" | "IssuerHash" => v.hex(Some(fnv(name) ^ rng.random_range(0..4)), 40),
        "CertificateSerialNumber" => {
            let mut s = String::new();
            push_hex_upper(&mut s, rng.random(), 38);
            v.str(&s)
        }
        "CrlDistributionPointUrls" => v.str("[\"http://www.microsoft.com/pkiops/crl/MicCodSigPCA2011_2011-07-08.crl\"]"),
        "CertificateCreationTime" => v.time(ctx.ts - 300 * 86_400 * TICKS_PER_SEC),
        "CertificateExpirationTime" => v.time(ctx.ts + 200 * 86_400 * TICKS_PER_SEC),
        "CertificateCountersignatureTime" => v.time(ctx.ts - 90 * 86_400 * TICKS_PER_SEC),
        "IsRootSignerMicrosoft" => v.bool(rng.random_bool(0.7)),
        // TVM: software and vulnerabilities
        "SoftwareVendor" => v.str(sw.0),
        "SoftwareName" => v.str(sw.1),
        "SoftwareVersion" => v.str(sw.2),
        "ProductCodeCpe" => v.str(&format!("cpe:2.3:a:{}:{}:{}:*:*:*:*:*:*:*", sw.0, sw.1, sw.2)),
        "EndOfSupportStatus" => v.str(if sw.1 == "jre" { "EOS Version" } else { "" }),
        "EndOfSupportDate" => v.opt_time((sw.1 == "jre").then_some(ctx.ts - 400 * 86_400 * TICKS_PER_SEC)),
        "CveId" => v.str(&cve),
        "VulnerabilitySeverityLevel" => v.str(pick(rng, &["Low", "Medium", "High", "High", "Critical"])),
        "RecommendedSecurityUpdate" => v.str(&format!("Update {} to version {}", sw.1, sw.3)),
        "RecommendedSecurityUpdateId" => v.str(if sw.0 == "microsoft" { "KB5046633" } else { "" }),
        "CveTags" => v.json(pick(rng, &["[]", "[]", "[\"ZeroDay\"]", "[\"ExploitVerified\"]"])),
        "CvssScore" => v.str(pick(rng, &["5.3", "6.5", "7.5", "7.8", "8.8", "9.8"])),
        "IsExploitAvailable" => v.bool(rng.random_bool(0.2)),
        "LastModifiedTime" => v.time(ctx.ts - rng.random_range(1..60) * 86_400 * TICKS_PER_SEC),
        "PublishedDate" => v.time(ctx.ts - rng.random_range(60..400) * 86_400 * TICKS_PER_SEC),
        "VulnerabilityDescription" => v.str(&format!("Use after free in {} allows a remote attacker to potentially exploit heap corruption via a crafted HTML page.", sw.1)),
        "AffectedSoftware" => v.json(&format!("[\"{} {} < {}\"]", sw.0, sw.1, sw.3)),
        "RegistryPaths" => v.json(&format!("[\"HKEY_LOCAL_MACHINE\\\\SOFTWARE\\\\Microsoft\\\\Windows\\\\CurrentVersion\\\\Uninstall\\\\{}\"]", sw.1)),
        "DiskPaths" => v.json(&format!("[\"C:\\\\Program Files\\\\{}\\\\{}.exe\"]", sw.0, sw.1)),
        "LastSeenTime" => v.time(ctx.ts - rng.random_range(0..86_400) * TICKS_PER_SEC),
        // TVM: secure configuration
        "ConfigurationId" => v.str(cfg.0),
        "ConfigurationCategory" => v.str(cfg.1),
        "ConfigurationSubcategory" => v.str(cfg.2),
        "ConfigurationImpact" => v.real(cfg.3),
        "ConfigurationName" => v.str(cfg.4),
        "ConfigurationDescription" => v.str(&format!("{}. This setting helps protect devices against threats.", cfg.4)),
        "RiskDescription" => v.str("Devices without this setting are more exposed to malware and credential theft."),
        "RemediationOptions" => v.str(&format!("Use Group Policy or Intune to configure: {}", cfg.4)),
        "ConfigurationBenchmarks" => v.json(&format!("[{{\"benchmark\":\"CIS\",\"id\":\"18.9.47.{}\",\"version\":\"3.0.0\"}}]", ctx.extra.software % 20)),
        "IsCompliant" => v.bool(rng.random_bool(0.75)),
        "IsApplicable" => v.bool(true),
        "IsExpectedUserImpact" => v.bool(rng.random_bool(0.1)),
        "Context" => v.json("[[null,true,null,null]]"),
        "Tags" => v.json("[\"Defender\"]"),
        // TVM: browser extensions
        "BrowserName" => v.str(pick(rng, &["Chrome", "Edge"])),
        "ExtensionId" => {
            let mut s = String::new();
            push_hex(&mut s, fnv(sw.1), 32);
            let id: String = s.bytes().map(|b| (b'a' + (b % 16)) as char).collect();
            v.str(&id)
        }
        "ExtensionName" => v.str(pick(rng, &["Microsoft Editor", "Adobe Acrobat", "Grammarly", "LastPass", "uBlock Origin"])),
        "ExtensionDescription" | "PermissionDescription" => v.str("Read and change all your data on all websites"),
        "ExtensionVersion" => match v.ty {
            defender_core::ColumnType::Dynamic => v.json("[\"24.11.1\",\"24.10.3\"]"),
            _ => v.str("24.11.1"),
        },
        "ExtensionRisk" | "PermissionRisk" => v.str(pick(rng, &["Low", "Medium", "High"])),
        "ExtensionVendor" => v.str(pick(rng, &["Microsoft Corporation", "Adobe Inc.", "Grammarly"])),
        "IsActivated" | "IsPermissionRequired" => v.str(pick(rng, &["true", "false"])),
        "InstallationTime" => v.time(ctx.ts - rng.random_range(1..700) * 86_400 * TICKS_PER_SEC),
        "PermissionId" => v.str(&format!("{}", rng.random_range(1..60))),
        "PermissionName" => v.str(pick(rng, &["tabs", "storage", "cookies", "<all_urls>", "webRequest"])),
        // TVM: certificates
        "Thumbprint" => v.hex(Some(fnv(&d.name)), 40),
        "Path" => v.str("Local Machine\\My"),
        "SerialNumber" => v.hex(Some(fnv(&d.id)), 32),
        "IssuedTo" => v.json(&Obj::new().str("CommonName", &d.name).str("Organization", "Contoso Ltd").str("CountryName", "US").end()),
        "IssuedBy" => v.json(&Obj::new().str("CommonName", "Contoso Issuing CA 01").str("Organization", "Contoso Ltd").str("CountryName", "US").end()),
        "FriendlyName" => v.str(""),
        "SignatureAlgorithm" => v.str("sha256RSA"),
        "KeySize" => v.str("2048"),
        "ExpirationDate" => v.time(ctx.ts + 200 * 86_400 * TICKS_PER_SEC),
        "IssueDate" => v.time(ctx.ts - 165 * 86_400 * TICKS_PER_SEC),
        "SubjectType" => v.str("End entity"),
        "KeyUsage" => v.str("[\"DigitalSignature\",\"KeyEncipherment\"]"),
        "ExtendedKeyUsage" => v.str("[\"Client Authentication\",\"Server Authentication\"]"),
        // TVM: firmware and info gathering
        "ComponentType" => v.str(pick(rng, &["Bios", "Processor", "Hardware"])),
        "Manufacturer" => v.str(&d.model.1.to_ascii_lowercase()),
        "ComponentName" => v.str(&d.model.0.to_ascii_lowercase().replace(' ', "_")),
        "ComponentFamily" => v.str(""),
        "ComponentVersion" => v.str(pick(rng, &["1.15.0", "1.22.1", "N1MET72W (1.72)"])),
        "AdditionalFields" if ctx.table.starts_with("DeviceTvm") => v.json(
            &Obj::new().str("TlsClient1_0", "Disabled").str("AsrBlockOfficeChildProcess", "Audit").bool("IsPowerShellV2Enabled", false).end(),
        ),
        "IgId" => v.str(&format!("{}", 1000 + ctx.extra.software % 500)),
        "FieldName" => v.str(pick(rng, &["TlsClient1_0", "AsrBlockOfficeChildProcess", "IsPowerShellV2Enabled"])),
        "Description" => v.str("Whether TLS 1.0 is enabled for client connections"),
        "Categories" => v.json("[\"tls\"]"),
        "DataStructure" => v.str("String"),
        _ => return false,
    }
    true
}
