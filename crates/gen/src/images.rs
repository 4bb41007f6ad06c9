//! Executable images a Windows fleet runs: path, version resource, typical parent, command-line
//! shape and how often each shows up in each kind of event. Digests are derived from the
//! image's path and version, so the same binary always has the same SHA1/SHA256/MD5.

/// How an image's command line is built (see [`crate::cmdline`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cmd {
    /// No command line (the System process).
    None,
    Service,
    PowerShell,
    Shell,
    Rundll32,
    Chromium,
    Office,
    Msiexec,
    Conhost,
    Plain,
    Java,
    Python,
    Git,
    Defender,
    Lolbin,
    Explorer,
    Electron,
}

/// One executable.
#[derive(Debug)]
pub(crate) struct Image {
    pub file: &'static str,
    /// Folder; `%U%` stands for the user's profile name.
    pub dir: &'static str,
    pub company: &'static str,
    pub product: &'static str,
    pub version: &'static str,
    pub description: &'static str,
    pub internal: &'static str,
    pub original: &'static str,
    pub size: u64,
    pub cmd: Cmd,
    /// Runs as `nt authority\system` (else as the device's user).
    pub system: bool,
    /// File names of the images that typically start this one.
    pub parents: &'static [&'static str],
    /// Weights as: created process, network initiator, file actor, registry actor, image loader.
    pub w: [u16; 5],
}

/// Index into [`Image::w`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role {
    Created = 0,
    Network = 1,
    File = 2,
    Registry = 3,
    Loader = 4,
}

const WIN: &str = "Microsoft® Windows® Operating System";
const MS: &str = "Microsoft Corporation";
const SYS32: &str = "C:\\Windows\\System32";

#[allow(clippy::too_many_arguments)]
const fn win(
    file: &'static str,
    dir: &'static str,
    version: &'static str,
    description: &'static str,
    internal: &'static str,
    size: u64,
    cmd: Cmd,
    system: bool,
    parents: &'static [&'static str],
    w: [u16; 5],
) -> Image {
    Image {
        file,
        dir,
        company: MS,
        product: WIN,
        version,
        description,
        internal,
        original: file,
        size,
        cmd,
        system,
        parents,
        w,
    }
}

#[allow(clippy::too_many_arguments)]
const fn app(
    file: &'static str,
    dir: &'static str,
    company: &'static str,
    product: &'static str,
    version: &'static str,
    description: &'static str,
    size: u64,
    cmd: Cmd,
    parents: &'static [&'static str],
    w: [u16; 5],
) -> Image {
    Image {
        file,
        dir,
        company,
        product,
        version,
        description,
        internal: file,
        original: file,
        size,
        cmd,
        system: false,
        parents,
        w,
    }
}

const PS_DIR: &str = "C:\\Windows\\System32\\WindowsPowerShell\\v1.0";
const MP_DIR: &str = "C:\\ProgramData\\Microsoft\\Windows Defender\\Platform\\4.18.25100.9008-0";
const SENSE_DIR: &str = "C:\\Program Files\\Windows Defender Advanced Threat Protection";
const USERS: &[&str] = &["explorer.exe", "cmd.exe", "powershell.exe"];
const SVC: &[&str] = &["svchost.exe", "services.exe"];

/// The System process (pid 4): no file, no command line. Always first.
#[rustfmt::skip]
pub(crate) static IMAGES: &[Image] = &[
    Image {
        file: "System",
        dir: "",
        company: "",
        product: "",
        version: "",
        description: "",
        internal: "",
        original: "",
        size: 0,
        cmd: Cmd::None,
        system: true,
        parents: &[],
        w: [0, 30, 6, 4, 0],
    },
    win("smss.exe", SYS32, "10.0.22621.4391", "Windows Session Manager", "smss.exe", 159_744, Cmd::Plain, true, &["System"], [1, 0, 0, 1, 1]),
    win("wininit.exe", SYS32, "10.0.22621.3672", "Windows Start-Up Application", "wininit.exe", 454_656, Cmd::Plain, true, &["smss.exe"], [1, 0, 0, 1, 1]),
    win("services.exe", SYS32, "10.0.22621.4391", "Services and Controller app", "services.exe", 745_472, Cmd::Plain, true, &["wininit.exe"], [1, 0, 1, 20, 2]),
    win("lsass.exe", SYS32, "10.0.22621.4541", "Local Security Authority Process", "lsass.exe", 83_272, Cmd::Plain, true, &["wininit.exe"], [0, 6, 2, 4, 4]),
    win("svchost.exe", SYS32, "10.0.22621.3672", "Host Process for Windows Services", "svchost.exe", 57_360, Cmd::Service, true, &["services.exe"], [40, 60, 50, 60, 40]),
    win("explorer.exe", "C:\\Windows", "10.0.22621.4541", "Windows Explorer", "explorer", 5_199_488, Cmd::Explorer, false, &["userinit.exe"], [3, 6, 30, 30, 20]),
    win("userinit.exe", SYS32, "10.0.22621.1", "Userinit Logon Application", "userinit", 36_864, Cmd::Plain, false, &["winlogon.exe"], [2, 0, 0, 1, 1]),
    win("winlogon.exe", SYS32, "10.0.22621.4541", "Windows Logon Application", "winlogon", 905_216, Cmd::Plain, true, &["smss.exe"], [1, 0, 0, 2, 1]),
    win("powershell.exe", PS_DIR, "10.0.22621.3527", "Windows PowerShell", "POWERSHELL", 448_000, Cmd::PowerShell, false, &["cmd.exe", "explorer.exe", "svchost.exe", "WmiPrvSE.exe", "CcmExec.exe", "Microsoft.Management.Services.IntuneWindowsAgent.exe"], [30, 12, 15, 8, 25]),
    win("cmd.exe", SYS32, "10.0.22621.4391", "Windows Command Processor", "cmd", 323_584, Cmd::Shell, false, &["explorer.exe", "powershell.exe", "svchost.exe", "Code.exe", "java.exe"], [30, 0, 6, 2, 6]),
    win("conhost.exe", SYS32, "10.0.22621.4391", "Console Window Host", "ConHost", 1_003_520, Cmd::Conhost, false, &["cmd.exe", "powershell.exe", "MpCmdRun.exe", "git.exe"], [40, 0, 1, 1, 4]),
    win("rundll32.exe", SYS32, "10.0.22621.1", "Windows host process (Rundll32)", "rundll", 71_680, Cmd::Rundll32, false, &["svchost.exe", "explorer.exe", "cmd.exe"], [10, 3, 4, 6, 8]),
    win("regsvr32.exe", SYS32, "10.0.22621.1", "Microsoft(C) Register Server", "REGSVR32", 25_600, Cmd::Lolbin, false, &["msiexec.exe", "cmd.exe"], [2, 0, 1, 3, 2]),
    win("msiexec.exe", SYS32, "5.0.22621.4249", "Windows® installer", "msiexec", 69_632, Cmd::Msiexec, true, &["services.exe", "explorer.exe", "svchost.exe"], [6, 2, 20, 15, 8]),
    win("WmiPrvSE.exe", "C:\\Windows\\System32\\wbem", "10.0.22621.4391", "WMI Provider Host", "Wmiprvse.exe", 548_864, Cmd::Plain, true, &["svchost.exe"], [6, 1, 3, 4, 8]),
    win("taskhostw.exe", SYS32, "10.0.22621.4391", "Host Process for Windows Tasks", "taskhostw.exe", 102_400, Cmd::Plain, false, &["svchost.exe"], [8, 2, 6, 6, 6]),
    win("dllhost.exe", SYS32, "10.0.22621.3527", "COM Surrogate", "DllHost.exe", 21_504, Cmd::Plain, false, &["svchost.exe"], [8, 1, 4, 4, 8]),
    win("backgroundTaskHost.exe", SYS32, "10.0.22621.1", "Background Task Host", "backgroundTaskHost.exe", 36_864, Cmd::Plain, false, &["svchost.exe"], [8, 3, 3, 3, 6]),
    win("SearchProtocolHost.exe", SYS32, "7.0.22621.4541", "Microsoft Windows Search Protocol Host", "SearchProtocolHost.exe", 438_272, Cmd::Plain, true, &["SearchIndexer.exe"], [8, 0, 8, 2, 5]),
    win("SearchIndexer.exe", SYS32, "7.0.22621.4541", "Microsoft Windows Search Indexer", "SearchIndexer.exe", 1_003_520, Cmd::Plain, true, SVC, [1, 0, 12, 4, 2]),
    win("CompatTelRunner.exe", SYS32, "10.0.22621.4391", "Microsoft Compatibility Telemetry", "CompatTelRunner.exe", 208_896, Cmd::Plain, true, &["svchost.exe"], [4, 4, 4, 6, 4]),
    win("gpupdate.exe", SYS32, "10.0.22621.1", "Microsoft® Group Policy Update Utility", "gpupdate.exe", 31_744, Cmd::Lolbin, false, USERS, [2, 1, 1, 4, 1]),
    win("reg.exe", SYS32, "10.0.22621.1", "Registry Console Tool", "reg.exe", 75_776, Cmd::Lolbin, false, &["cmd.exe", "powershell.exe"], [5, 0, 0, 8, 1]),
    win("schtasks.exe", SYS32, "10.0.22621.1", "Task Scheduler Configuration Tool", "schtasks.exe", 235_520, Cmd::Lolbin, false, &["cmd.exe", "powershell.exe", "msiexec.exe"], [4, 0, 2, 3, 1]),
    win("net.exe", SYS32, "10.0.22621.1", "Net Command", "net.exe", 59_904, Cmd::Lolbin, false, &["cmd.exe", "powershell.exe"], [3, 0, 0, 0, 1]),
    win("whoami.exe", SYS32, "10.0.22621.1", "whoami - displays logged on user information", "whoami.exe", 80_384, Cmd::Lolbin, false, &["cmd.exe", "powershell.exe"], [2, 0, 0, 0, 1]),
    win("certutil.exe", SYS32, "10.0.22621.4391", "CertUtil.exe", "CertUtil.exe", 1_557_504, Cmd::Lolbin, false, &["cmd.exe", "powershell.exe"], [1, 1, 1, 0, 1]),
    win("sc.exe", SYS32, "10.0.22621.1", "Service Control Manager Configuration Tool", "sc.exe", 72_192, Cmd::Lolbin, false, &["cmd.exe", "powershell.exe", "msiexec.exe"], [2, 0, 0, 1, 1]),
    win("wscript.exe", SYS32, "5.812.10240.16384", "Microsoft ® Windows Based Script Host", "wscript.exe", 171_008, Cmd::Lolbin, false, &["explorer.exe", "OUTLOOK.EXE"], [1, 1, 1, 1, 1]),
    win("mshta.exe", SYS32, "11.0.22621.4391", "Microsoft (R) HTML Application host", "MSHTA.EXE", 14_336, Cmd::Lolbin, false, &["explorer.exe", "OUTLOOK.EXE"], [1, 1, 0, 0, 1]),
    Image { company: MS, product: "Microsoft Malware Protection", ..win("MsMpEng.exe", MP_DIR, "4.18.25100.9008", "Antimalware Service Executable", "MsMpEng.exe", 133_584, Cmd::Plain, true, &["services.exe"], [0, 8, 40, 10, 10]) },
    Image { company: MS, product: "Microsoft Malware Protection", ..win("MpCmdRun.exe", MP_DIR, "4.18.25100.9008", "Microsoft Malware Protection Command Line Utility", "MpCmdRun", 1_475_440, Cmd::Defender, true, &["MsMpEng.exe", "svchost.exe"], [6, 4, 6, 2, 3]) },
    Image { company: MS, product: "Microsoft Defender for Endpoint", ..win("MsSense.exe", SENSE_DIR, "10.8760.22621.1010", "Windows Defender Advanced Threat Protection Service Executable", "MsSense.exe", 4_818_176, Cmd::Plain, true, &["services.exe"], [0, 20, 15, 6, 8]) },
    Image { company: MS, product: "Microsoft Defender for Endpoint", ..win("SenseIR.exe", SENSE_DIR, "10.8760.22621.1010", "Windows Defender Advanced Threat Protection Automated Investigation", "SenseIR.exe", 2_211_648, Cmd::Defender, true, &["MsSense.exe"], [2, 3, 4, 2, 4]) },
    Image { company: MS, product: "Microsoft Defender for Endpoint", ..win("SenseCncProxy.exe", SENSE_DIR, "10.8760.22621.1010", "Windows Defender Advanced Threat Protection Communication Module", "SenseCncProxy.exe", 1_218_880, Cmd::Defender, true, &["MsSense.exe"], [3, 10, 1, 0, 3]) },
    app("chrome.exe", "C:\\Program Files\\Google\\Chrome\\Application", "Google LLC", "Google Chrome", "131.0.6778.86", "Google Chrome", 3_118_872, Cmd::Chromium, &["explorer.exe", "chrome.exe"], [14, 70, 30, 8, 20]),
    app("msedge.exe", "C:\\Program Files (x86)\\Microsoft\\Edge\\Application", MS, "Microsoft Edge", "131.0.2903.70", "Microsoft Edge", 4_131_384, Cmd::Chromium, &["explorer.exe", "msedge.exe", "OUTLOOK.EXE"], [14, 70, 30, 8, 20]),
    app("firefox.exe", "C:\\Program Files\\Mozilla Firefox", "Mozilla Corporation", "Firefox", "133.0.0.8876", "Firefox", 676_376, Cmd::Plain, &["explorer.exe", "firefox.exe"], [4, 12, 6, 2, 4]),
    app("ms-teams.exe", "C:\\Program Files\\WindowsApps\\MSTeams_24295.605.3225.8804_x64__8wekyb3d8bbwe", MS, "Microsoft Teams", "24295.605.3225.8804", "Microsoft Teams", 2_379_136, Cmd::Electron, &["explorer.exe", "svchost.exe"], [3, 30, 12, 6, 8]),
    Image { internal: "Outlook", ..app("OUTLOOK.EXE", "C:\\Program Files\\Microsoft Office\\root\\Office16", MS, "Microsoft Outlook", "16.0.18129.20158", "Microsoft Outlook", 43_442_568, Cmd::Office, &["explorer.exe"], [3, 25, 18, 12, 10]) },
    Image { internal: "WinWord", ..app("WINWORD.EXE", "C:\\Program Files\\Microsoft Office\\root\\Office16", MS, "Microsoft Office", "16.0.18129.20158", "Microsoft Word", 1_622_904, Cmd::Office, &["explorer.exe", "OUTLOOK.EXE"], [4, 6, 14, 10, 8]) },
    Image { internal: "Excel", ..app("EXCEL.EXE", "C:\\Program Files\\Microsoft Office\\root\\Office16", MS, "Microsoft Office", "16.0.18129.20158", "Microsoft Excel", 72_396_680, Cmd::Office, &["explorer.exe", "OUTLOOK.EXE"], [4, 5, 14, 10, 8]) },
    app("OneDrive.exe", "C:\\Program Files\\Microsoft OneDrive", MS, "Microsoft OneDrive", "24.226.1110.0004", "Microsoft OneDrive", 3_526_992, Cmd::Plain, &["explorer.exe", "userinit.exe"], [2, 25, 35, 6, 6]),
    app("Code.exe", "C:\\Users\\%U%\\AppData\\Local\\Programs\\Microsoft VS Code", MS, "Visual Studio Code", "1.95.3", "Visual Studio Code", 158_417_704, Cmd::Electron, &["explorer.exe", "Code.exe"], [3, 8, 10, 2, 5]),
    app("git.exe", "C:\\Program Files\\Git\\cmd", "The Git Development Community", "Git", "2.47.1.1", "Git for Windows", 45_920, Cmd::Git, &["Code.exe", "cmd.exe", "powershell.exe"], [4, 4, 8, 0, 3]),
    app("python.exe", "C:\\Users\\%U%\\AppData\\Local\\Programs\\Python\\Python312", "Python Software Foundation", "Python", "3.12.7", "Python", 103_192, Cmd::Python, &["cmd.exe", "Code.exe", "powershell.exe"], [2, 4, 4, 0, 3]),
    app("java.exe", "C:\\Program Files\\Eclipse Adoptium\\jdk-21.0.5.11-hotspot\\bin", "Eclipse Adoptium", "OpenJDK Platform 21.0.5", "21.0.5.0", "OpenJDK Platform binary", 283_552, Cmd::Java, &["cmd.exe", "explorer.exe", "services.exe"], [1, 6, 3, 0, 2]),
    app("Zoom.exe", "C:\\Users\\%U%\\AppData\\Roaming\\Zoom\\bin", "Zoom Video Communications, Inc.", "Zoom", "6.2.11.50207", "Zoom Meetings", 471_232, Cmd::Plain, &["explorer.exe"], [1, 10, 3, 2, 2]),
    app("CcmExec.exe", "C:\\Windows\\CCM", MS, "System Center Configuration Manager", "5.0.9128.1007", "Host Process for Microsoft Configuration Manager", 2_621_952, Cmd::Plain, &["services.exe"], [1, 6, 8, 6, 4]),
    app("Microsoft.Management.Services.IntuneWindowsAgent.exe", "C:\\Program Files (x86)\\Microsoft Intune Management Extension", MS, "Microsoft Intune", "1.83.107.0", "Microsoft Intune Management Extension", 101_256, Cmd::Plain, &["services.exe"], [1, 8, 6, 6, 3]),
];

/// (file name, description, size): libraries an image-load event reports.
#[rustfmt::skip]
pub(crate) static DLLS: &[(&str, &str, u64)] = &[
    ("ntdll.dll", "NT Layer DLL", 2_170_808),
    ("kernel32.dll", "Windows NT BASE API Client DLL", 774_648),
    ("KernelBase.dll", "Windows NT BASE API Client DLL", 3_853_640),
    ("user32.dll", "Multi-User Windows USER API Client DLL", 1_826_504),
    ("advapi32.dll", "Advanced Windows 32 Base API", 708_608),
    ("ws2_32.dll", "Windows Socket 2.0 32-Bit DLL", 479_232),
    ("crypt32.dll", "Crypto API32", 1_495_040),
    ("wininet.dll", "Internet Extensions for Win32", 4_879_360),
    ("winhttp.dll", "Windows HTTP Services", 1_138_688),
    ("amsi.dll", "Anti-Malware Scan Interface", 102_400),
    ("bcrypt.dll", "Windows Cryptographic Primitives Library", 159_744),
    ("ncrypt.dll", "Windows NCrypt Router", 327_680),
    ("dnsapi.dll", "DNS Client API DLL", 888_832),
    ("samlib.dll", "SAM Library DLL", 139_264),
    ("vaultcli.dll", "Credential Vault Client Library", 372_736),
    ("wldp.dll", "Windows Lockdown Policy", 253_952),
    ("taskschd.dll", "Task Scheduler COM API", 823_296),
    ("urlmon.dll", "OLE32 Extensions for Win32", 1_785_856),
    ("combase.dll", "Microsoft COM for Windows", 3_629_056),
    ("shell32.dll", "Windows Shell Common Dll", 7_581_696),
    ("dbghelp.dll", "Windows Image Helper", 2_011_136),
    ("msi.dll", "Windows Installer", 3_452_928),
    ("clr.dll", "Microsoft .NET Runtime Common Language Runtime - WorkStation", 10_766_152),
    ("mscoree.dll", "Microsoft .NET Runtime Execution Engine", 450_560),
    ("System.Management.Automation.ni.dll", "System.Management.Automation", 39_871_488),
    ("mpclient.dll", "Client Interface", 1_650_176),
];

/// Folder of a DLL by its name.
pub(crate) fn dll_dir(name: &str) -> &'static str {
    match name {
        "clr.dll" | "mscoree.dll" => "C:\\Windows\\Microsoft.NET\\Framework64\\v4.0.30319",
        "System.Management.Automation.ni.dll" => {
            "C:\\Windows\\assembly\\NativeImages_v4.0.30319_64\\System.Manaa57fc8cc#\\c45e0bb7b4ed7a3bf4cef1b0e5de0b1b"
        }
        "mpclient.dll" => MP_DIR,
        _ => SYS32,
    }
}

/// Index of an image by file name (linear: the table is small and this runs at start-up).
pub(crate) fn find(file: &str) -> Option<usize> {
    IMAGES.iter().position(|i| i.file == file)
}
