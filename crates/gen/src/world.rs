//! The simulated organisation: one tenant, its devices and its people, built once from the seed.
//! Records draw their device and accounts from here, so a device keeps its id, name, group and
//! IP address, and a person keeps their SID and UPN, across the whole stream.

use rand::{Rng, rngs::SmallRng};

use crate::{
    json::{fnv, guid, mix, push_hex},
    pools::{CITIES, DEPARTMENTS, FIRST_NAMES, JOB_TITLES, LAST_NAMES, MACHINE_GROUPS},
};

/// The organisation's Active Directory / Entra names.
pub(crate) const AD_DOMAIN: &str = "contoso";
pub(crate) const UPN_SUFFIX: &str = "contoso.com";
pub(crate) const DNS_SUFFIX: &str = "corp.contoso.com";

/// A person or a built-in service account.
#[derive(Debug)]
pub(crate) struct Account {
    pub name: String,
    pub domain: String,
    pub sid: String,
    /// Empty for built-in accounts.
    pub upn: String,
    /// Entra object id; empty for built-in accounts.
    pub object_id: String,
    pub display: String,
    pub given: &'static str,
    pub surname: &'static str,
    pub department: &'static str,
    pub title: &'static str,
    pub city: usize,
    pub builtin: bool,
}

/// An onboarded device.
#[derive(Debug)]
pub(crate) struct Device {
    /// 40 hex digits.
    pub id: String,
    /// Lowercase FQDN.
    pub name: String,
    pub group: Option<&'static str>,
    /// Index of its main user in [`World::users`].
    pub user: usize,
    pub ip: String,
    pub ipv6: String,
    pub public_ip: String,
    pub mac: String,
    pub aad_id: String,
    pub server: bool,
    /// (OSPlatform, OSVersion, OSBuild, OsBuildRevision)
    pub os: (&'static str, &'static str, u32, u32),
    pub model: (&'static str, &'static str),
}

/// Everything built from the seed once.
#[derive(Debug)]
pub(crate) struct World {
    pub tenant: String,
    pub devices: Vec<Device>,
    pub users: Vec<Account>,
    /// `nt authority\system`, `local service`, `network service`.
    pub builtin: [Account; 3],
}

const MODELS: &[(&str, &str)] = &[
    ("Latitude 7440", "Dell Inc."),
    ("Latitude 5540", "Dell Inc."),
    ("HP EliteBook 840 G10", "HP"),
    ("ThinkPad T14 Gen 4", "LENOVO"),
    ("Surface Laptop 5", "Microsoft Corporation"),
    ("Virtual Machine", "Microsoft Corporation"),
];

impl World {
    pub(crate) fn new(rng: &mut SmallRng) -> Self {
        let tenant = guid(rng.random());
        let domain_sid = format!(
            "S-1-5-21-{}-{}-{}",
            rng.random_range(1_000_000_000..4_000_000_000u64),
            rng.random_range(100_000_000..4_000_000_000u64),
            rng.random_range(100_000_000..4_000_000_000u64)
        );
        let users: Vec<Account> = (0..300).map(|i| person(rng, &domain_sid, i)).collect();
        let devices = (0..400).map(|i| device(rng, i, users.len())).collect();
        let builtin = [
            builtin("system", "S-1-5-18"),
            builtin("local service", "S-1-5-19"),
            builtin("network service", "S-1-5-20"),
        ];
        Self { tenant, devices, users, builtin }
    }

    /// A device, skewed so that some devices are much noisier than others.
    pub(crate) fn pick_device(&self, rng: &mut SmallRng) -> &Device {
        let u: f64 = rng.random();
        &self.devices[((u * u) * self.devices.len() as f64) as usize]
    }

    pub(crate) fn pick_user(&self, rng: &mut SmallRng) -> &Account {
        &self.users[rng.random_range(0..self.users.len())]
    }
}

fn builtin(name: &str, sid: &str) -> Account {
    Account {
        name: name.to_string(),
        domain: "nt authority".to_string(),
        sid: sid.to_string(),
        upn: String::new(),
        object_id: String::new(),
        display: name.to_string(),
        given: "",
        surname: "",
        department: "",
        title: "",
        city: 0,
        builtin: true,
    }
}

fn person(rng: &mut SmallRng, domain_sid: &str, i: usize) -> Account {
    let given = pick(rng, FIRST_NAMES);
    let surname = pick(rng, LAST_NAMES);
    // Name collisions get a digit, like a real directory.
    let suffix = if i >= FIRST_NAMES.len() * 2 && rng.random_bool(0.3) { format!("{}", i % 10) } else { String::new() };
    let name = format!("{}{}{suffix}", given[..1].to_ascii_lowercase(), surname.to_ascii_lowercase());
    Account {
        upn: format!("{}.{}{suffix}@{UPN_SUFFIX}", given.to_ascii_lowercase(), surname.to_ascii_lowercase()),
        sid: format!("{domain_sid}-{}", 1104 + i * 3 + rng.random_range(0..3)),
        object_id: guid(rng.random()),
        display: format!("{given} {surname}"),
        domain: AD_DOMAIN.to_string(),
        name,
        given,
        surname,
        department: pick(rng, DEPARTMENTS),
        title: pick(rng, JOB_TITLES),
        city: rng.random_range(0..CITIES.len()),
        builtin: false,
    }
}

fn device(rng: &mut SmallRng, i: usize, users: usize) -> Device {
    let server = i % 10 == 9;
    let name = if server {
        let role = pick(rng, &["app", "sql", "web", "fs", "dc", "rds", "build"]);
        format!("srv-{role}{:02}.{DNS_SUFFIX}", i / 10 % 100)
    } else {
        let kind = pick(rng, &["wks", "wks", "wks", "lap", "vdi"]);
        format!("{kind}-{:04}.{DNS_SUFFIX}", rng.random_range(1..4000))
    };
    let mut id = String::with_capacity(40);
    push_hex(&mut id, rng.random(), 40);
    let os = if server {
        pick(rng, &[("WindowsServer2022", "10.0", 20348, 2849), ("WindowsServer2019", "10.0", 17763, 6532)])
    } else {
        pick(
            rng,
            &[
                ("Windows11", "10.0", 22631, 4541),
                ("Windows11", "10.0", 26100, 2314),
                ("Windows10", "10.0", 19045, 5198),
            ],
        )
    };
    let group = match (server, rng.random_range(0..10)) {
        (_, 0) => None,
        (true, n) => Some(MACHINE_GROUPS[3 + n % 2]),
        (false, n) => Some(MACHINE_GROUPS[[0, 1, 2, 5, 6, 7][n % 6]]),
    };
    let h = mix(fnv(&name));
    Device {
        ip: format!("10.{}.{}.{}", 10 + i % 40, rng.random_range(0..255), rng.random_range(2..254)),
        ipv6: format!("fe80::{:x}:{:x}:{:x}:{:x}", h & 0xffff, (h >> 16) & 0xffff, (h >> 32) & 0xffff, h >> 48),
        public_ip: format!(
            "{}.{}.{}.{}",
            pick(rng, &[20u8, 52, 40, 131, 198, 203]),
            h % 250,
            (h >> 8) % 250,
            (h >> 16) % 250
        ),
        mac: format!(
            "{:02X}-{:02X}-{:02X}-{:02X}-{:02X}-{:02X}",
            0x00,
            0x15 + (h % 3) as u8,
            (h >> 8) as u8,
            (h >> 16) as u8,
            (h >> 24) as u8,
            (h >> 32) as u8
        ),
        aad_id: guid(h),
        user: rng.random_range(0..users),
        model: if server { MODELS[5] } else { pick(rng, &MODELS[..5]) },
        id,
        name,
        group,
        server,
        os,
    }
}

/// A uniformly chosen element.
pub(crate) fn pick<T: Copy>(rng: &mut SmallRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// A weighted choice from a `(value, weight)` list.
pub(crate) fn pick_w<T: Copy>(rng: &mut SmallRng, items: &[(T, u32)]) -> T {
    let total: u32 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random_range(0..total);
    for &(v, w) in items {
        if x < w {
            return v;
        }
        x -= w;
    }
    items[items.len() - 1].0
}
