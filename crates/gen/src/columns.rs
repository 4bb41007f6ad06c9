//! From column name to value. Each table's columns are planned once into a [`Gen`] (which part of
//! the event a column shows: the initiating process's SHA1, the remote port, ...); per record the
//! plan is walked and each value written from the event's [`Ctx`]. Columns without a plan of their
//! own go to [`crate::named`], which knows the rarer tables and falls back on name and type.
//!
//! Every value goes through [`Typed`], which writes it in the JSON shape of the column's type, so
//! a quirk-free record always decodes without coercion.

use defender_core::{ColumnType, TableSchema};
use rand::{Rng, rngs::SmallRng};

use crate::{
    json::{push_hex, push_i64, push_str, push_time_json},
    scenario::{Ctx, Proc},
    world::Account,
};

/// Which process of the event: created/target, initiating, initiating's parent.
type Slot = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gen {
    Timestamp,
    Action,
    DeviceId,
    DeviceName,
    MachineGroup,
    ReportIdLong,
    Additional,
    Empty,
    LogonId,
    Proc(Slot, Pf),
    File(Ff),
    Acct(AcctSlot, Af),
    Net(Nf),
    Reg(Rf),
    /// Handled by [`crate::named::write`] from the column's name.
    Named,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pf {
    FileName,
    FolderPath,
    Sha1,
    Sha256,
    Md5,
    FileSize,
    Company,
    Product,
    Version,
    Internal,
    Original,
    Description,
    Id,
    CommandLine,
    CreationTime,
    Integrity,
    Elevation,
    LogonId,
    SessionId,
    IsRemote,
    RemoteDevice,
    RemoteIp,
    UniqueId,
    SignerType,
    SignatureStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ff {
    Name,
    Path,
    Sha1,
    Sha256,
    Md5,
    Size,
    OriginUrl,
    OriginReferrer,
    OriginIp,
    PrevName,
    PrevPath,
    Share,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AcctSlot {
    Account,
    Initiating,
    Request,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Af {
    Name,
    Domain,
    Sid,
    Upn,
    ObjectId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nf {
    RemoteIp,
    RemotePort,
    RemoteUrl,
    LocalIp,
    LocalPort,
    Protocol,
    LocalIpType,
    RemoteIpType,
    RemoteDeviceName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rf {
    Key,
    Type,
    Name,
    Data,
    PrevKey,
    PrevName,
    PrevData,
}

/// One planned column.
#[derive(Debug, Clone)]
pub(crate) struct Planned<'a> {
    pub name: &'a str,
    pub ty: ColumnType,
    pub how: Gen,
}

/// The plan of a table: its columns in schema order.
pub(crate) fn plan(table: &TableSchema) -> Vec<Planned<'_>> {
    let event_table = table.table.starts_with("Device") && !table.tvm;
    table
        .columns
        .iter()
        .map(|c| Planned { name: &c.name, ty: c.ty, how: plan_column(event_table, &c.name, c.ty) })
        .collect()
}

fn plan_column(event_table: bool, name: &str, ty: ColumnType) -> Gen {
    match name {
        "Timestamp" => return Gen::Timestamp,
        "MachineGroup" => return Gen::MachineGroup,
        "DeviceId" if event_table => return Gen::DeviceId,
        "DeviceName" if event_table => return Gen::DeviceName,
        "ReportId" if ty == ColumnType::Long => return Gen::ReportIdLong,
        _ => {}
    }
    if !event_table {
        return Gen::Named;
    }
    match name {
        "ActionType" => return Gen::Action,
        "AdditionalFields" => return Gen::Additional,
        "AppGuardContainerId" => return Gen::Empty,
        "LogonId" => return Gen::LogonId,
        "IsInitiatingProcessRemoteSession" => return Gen::Proc(1, Pf::IsRemote),
        "IsProcessRemoteSession" => return Gen::Proc(0, Pf::IsRemote),
        "CreatedProcessSessionId" => return Gen::Proc(0, Pf::SessionId),
        "FileName" => return Gen::File(Ff::Name),
        "FolderPath" => return Gen::File(Ff::Path),
        "SHA1" => return Gen::File(Ff::Sha1),
        "SHA256" => return Gen::File(Ff::Sha256),
        "MD5" => return Gen::File(Ff::Md5),
        "FileSize" => return Gen::File(Ff::Size),
        "FileOriginUrl" => return Gen::File(Ff::OriginUrl),
        "FileOriginReferrerUrl" => return Gen::File(Ff::OriginReferrer),
        "FileOriginIP" => return Gen::File(Ff::OriginIp),
        "PreviousFileName" => return Gen::File(Ff::PrevName),
        "PreviousFolderPath" => return Gen::File(Ff::PrevPath),
        "ShareName" => return Gen::File(Ff::Share),
        "RemoteIP" => return Gen::Net(Nf::RemoteIp),
        "RemotePort" => return Gen::Net(Nf::RemotePort),
        "RemoteUrl" => return Gen::Net(Nf::RemoteUrl),
        "LocalIP" => return Gen::Net(Nf::LocalIp),
        "LocalPort" => return Gen::Net(Nf::LocalPort),
        "Protocol" => return Gen::Net(Nf::Protocol),
        "LocalIPType" => return Gen::Net(Nf::LocalIpType),
        "RemoteIPType" => return Gen::Net(Nf::RemoteIpType),
        "RemoteDeviceName" => return Gen::Net(Nf::RemoteDeviceName),
        "RegistryKey" => return Gen::Reg(Rf::Key),
        "RegistryValueType" => return Gen::Reg(Rf::Type),
        "RegistryValueName" => return Gen::Reg(Rf::Name),
        "RegistryValueData" => return Gen::Reg(Rf::Data),
        "PreviousRegistryKey" => return Gen::Reg(Rf::PrevKey),
        "PreviousRegistryValueName" => return Gen::Reg(Rf::PrevName),
        "PreviousRegistryValueData" => return Gen::Reg(Rf::PrevData),
        _ => {}
    }
    let (slot, rest) = if let Some(r) = name.strip_prefix("InitiatingProcessParent") {
        (2, r)
    } else if let Some(r) = name.strip_prefix("InitiatingProcessAccount") {
        return acct(AcctSlot::Initiating, r);
    } else if let Some(r) = name.strip_prefix("RequestAccount") {
        return acct(AcctSlot::Request, r);
    } else if let Some(r) = name.strip_prefix("Account") {
        return acct(AcctSlot::Account, r);
    } else if let Some(r) = name.strip_prefix("InitiatingProcess") {
        (1, r)
    } else if let Some(r) = name.strip_prefix("Process") {
        (0, r)
    } else {
        return Gen::Named;
    };
    let f = match rest {
        "FileName" => Pf::FileName,
        "FolderPath" => Pf::FolderPath,
        "SHA1" => Pf::Sha1,
        "SHA256" => Pf::Sha256,
        "MD5" => Pf::Md5,
        "FileSize" => Pf::FileSize,
        "VersionInfoCompanyName" => Pf::Company,
        "VersionInfoProductName" => Pf::Product,
        "VersionInfoProductVersion" => Pf::Version,
        "VersionInfoInternalFileName" => Pf::Internal,
        "VersionInfoOriginalFileName" => Pf::Original,
        "VersionInfoFileDescription" => Pf::Description,
        "Id" => Pf::Id,
        "CommandLine" => Pf::CommandLine,
        "CreationTime" => Pf::CreationTime,
        "IntegrityLevel" => Pf::Integrity,
        "TokenElevation" => Pf::Elevation,
        "LogonId" => Pf::LogonId,
        "SessionId" => Pf::SessionId,
        "RemoteSessionDeviceName" => Pf::RemoteDevice,
        "RemoteSessionIP" => Pf::RemoteIp,
        "UniqueId" => Pf::UniqueId,
        "SignerType" => Pf::SignerType,
        "SignatureStatus" => Pf::SignatureStatus,
        _ => return Gen::Named,
    };
    Gen::Proc(slot, f)
}

fn acct(slot: AcctSlot, rest: &str) -> Gen {
    match rest {
        "Name" => Gen::Acct(slot, Af::Name),
        "Domain" => Gen::Acct(slot, Af::Domain),
        "Sid" => Gen::Acct(slot, Af::Sid),
        "Upn" => Gen::Acct(slot, Af::Upn),
        "ObjectId" => Gen::Acct(slot, Af::ObjectId),
        _ => Gen::Named,
    }
}

/// Writes values in the JSON shape of one column type.
#[derive(Debug)]
pub(crate) struct Typed<'o> {
    pub out: &'o mut String,
    pub ty: ColumnType,
}

impl Typed<'_> {
    pub(crate) fn null(&mut self) {
        self.out.push_str("null");
    }

    /// Text; numeric columns get the number it spells, or null.
    pub(crate) fn str(&mut self, s: &str) {
        match self.ty {
            ColumnType::String | ColumnType::Guid | ColumnType::Dynamic => push_str(self.out, s),
            ColumnType::Long | ColumnType::Int | ColumnType::Real => match s.parse::<i64>() {
                Ok(n) => self.int(n),
                Err(_) => self.null(),
            },
            ColumnType::Bool | ColumnType::Datetime => self.null(),
        }
    }

    /// Text, or `null` when empty (Defender writes many absent strings as null).
    pub(crate) fn str_or_null(&mut self, s: &str) {
        if s.is_empty() { self.null() } else { self.str(s) }
    }

    pub(crate) fn int(&mut self, n: i64) {
        match self.ty {
            ColumnType::Long | ColumnType::Real | ColumnType::Dynamic => push_i64(self.out, n),
            ColumnType::Int if i32::try_from(n).is_ok() => push_i64(self.out, n),
            ColumnType::String | ColumnType::Guid => {
                self.out.push('"');
                push_i64(self.out, n);
                self.out.push('"');
            }
            ColumnType::Bool if n == 0 || n == 1 => self.out.push_str(if n == 1 { "true" } else { "false" }),
            _ => self.null(),
        }
    }

    pub(crate) fn opt_int(&mut self, n: Option<i64>) {
        match n {
            Some(n) => self.int(n),
            None => self.null(),
        }
    }

    pub(crate) fn real(&mut self, f: f64) {
        match self.ty {
            ColumnType::Real | ColumnType::Dynamic => {
                let s = format!("{f:.1}");
                self.out.push_str(&s);
            }
            ColumnType::String => push_str(self.out, &format!("{f:.1}")),
            _ => self.int(f as i64),
        }
    }

    pub(crate) fn bool(&mut self, b: bool) {
        match self.ty {
            ColumnType::Bool | ColumnType::Dynamic => self.out.push_str(if b { "true" } else { "false" }),
            ColumnType::String => push_str(self.out, if b { "True" } else { "False" }),
            _ => self.int(i64::from(b)),
        }
    }

    pub(crate) fn time(&mut self, ticks: i64) {
        match self.ty {
            ColumnType::Datetime | ColumnType::String | ColumnType::Dynamic => push_time_json(self.out, ticks),
            _ => self.null(),
        }
    }

    pub(crate) fn opt_time(&mut self, ticks: Option<i64>) {
        match ticks {
            Some(t) => self.time(t),
            None => self.null(),
        }
    }

    /// JSON text: raw in a dynamic column, as a string in a string column.
    pub(crate) fn json(&mut self, json: &str) {
        match self.ty {
            ColumnType::Dynamic => self.out.push_str(json),
            ColumnType::String => push_str(self.out, json),
            _ => self.null(),
        }
    }

    /// `n` hex digits from `seed`, or "" when `seed` is None.
    pub(crate) fn hex(&mut self, seed: Option<u64>, n: usize) {
        match seed {
            Some(seed) if matches!(self.ty, ColumnType::String | ColumnType::Guid) => {
                self.out.push('"');
                push_hex(self.out, seed, n);
                self.out.push('"');
            }
            Some(_) => self.null(),
            None => self.str(""),
        }
    }
}

/// Writes one planned (non-[`Gen::Named`]) column.
pub(crate) fn write(how: Gen, ctx: &Ctx<'_>, rng: &mut SmallRng, v: &mut Typed<'_>) {
    match how {
        Gen::Timestamp => v.time(ctx.ts),
        Gen::Action => v.str(ctx.action),
        Gen::DeviceId => v.str(&ctx.device.id),
        Gen::DeviceName => v.str(&ctx.device.name),
        Gen::MachineGroup => match ctx.device.group {
            Some(g) => v.str(g),
            None => v.null(),
        },
        Gen::ReportIdLong => v.int(ctx.report_id as i64),
        Gen::Additional => match &ctx.additional {
            Some(a) => v.json(a),
            None => v.null(),
        },
        Gen::Empty => v.str(""),
        Gen::LogonId => match (&ctx.procs[0], ctx.action.starts_with("Logon")) {
            (Some(p), _) => v.int(p.logon_id as i64),
            (None, true) => v.int(rng.random_range(100_000..90_000_000)),
            (None, false) => v.null(),
        },
        Gen::Proc(slot, f) => proc_field(ctx.procs[slot].as_ref(), slot, f, v),
        Gen::File(f) => file_field(ctx, f, v),
        Gen::Acct(slot, f) => {
            let a = match slot {
                AcctSlot::Account => ctx.account,
                AcctSlot::Initiating => ctx.procs[1].as_ref().map(|p| p.account),
                AcctSlot::Request => ctx.file.as_ref().filter(|f| !f.share.is_empty()).map(|_| ctx.user),
            };
            account_field(a, f, v);
        }
        Gen::Net(f) => net_field(ctx, f, v),
        Gen::Reg(f) => {
            let Some(r) = &ctx.reg else { return v.str("") };
            let prev = r.previous.as_ref();
            match f {
                Rf::Key => v.str(&r.key),
                Rf::Type => v.str(r.value_type),
                Rf::Name => v.str(&r.value_name),
                Rf::Data => v.str(&r.data),
                Rf::PrevKey => v.str(prev.map_or("", |p| p.0.as_str())),
                Rf::PrevName => v.str(prev.map_or("", |p| p.1.as_str())),
                Rf::PrevData => v.str(prev.map_or("", |p| p.2.as_str())),
            }
        }
        Gen::Named => unreachable!("named columns are written by crate::named"),
    }
}

fn proc_field(p: Option<&Proc<'_>>, slot: Slot, f: Pf, v: &mut Typed<'_>) {
    let Some(p) = p else {
        return match f {
            Pf::FileSize | Pf::Id | Pf::CreationTime | Pf::LogonId | Pf::SessionId | Pf::IsRemote => v.null(),
            _ => v.str(""),
        };
    };
    let img = p.img;
    let digest = (!p.path.is_empty()).then(|| p.digest_seed());
    let lower = slot > 0;
    match f {
        Pf::FileName if lower => lowercase(v, img.file),
        Pf::FileName => v.str(img.file),
        Pf::FolderPath if lower => lowercase(v, &p.path),
        Pf::FolderPath => v.str(&p.path),
        Pf::Sha1 => v.hex(digest.map(|d| d ^ 1), 40),
        // Defender does not compute every process's SHA256.
        Pf::Sha256 => v.hex(digest.filter(|_| p.unique_id % 3 != 0).map(|d| d ^ 2), 64),
        Pf::Md5 => v.hex(digest.map(|d| d ^ 3), 32),
        Pf::FileSize => v.opt_int((img.size > 0).then_some(img.size as i64)),
        Pf::Company => v.str(img.company),
        Pf::Product => v.str(img.product),
        Pf::Version => v.str(img.version),
        Pf::Internal => v.str(img.internal),
        Pf::Original => v.str(img.original),
        Pf::Description => v.str(img.description),
        Pf::Id => v.int(p.pid as i64),
        Pf::CommandLine => v.str(&p.cmdline),
        Pf::CreationTime => v.time(p.created),
        Pf::Integrity => v.str(p.integrity),
        Pf::Elevation => v.str(p.elevation),
        Pf::LogonId => v.int(p.logon_id as i64),
        Pf::SessionId => v.int(p.session as i64),
        Pf::IsRemote => v.bool(p.session == 3),
        Pf::RemoteDevice => v.str(if p.session == 3 { "JUMPHOST01" } else { "" }),
        Pf::RemoteIp => v.str(if p.session == 3 { "10.10.4.21" } else { "" }),
        Pf::UniqueId => v.int(p.unique_id as i64),
        Pf::SignerType => v.str(match img.company {
            "" => "",
            "Microsoft Corporation" if img.dir.starts_with("C:\\Windows") => "OsVendor",
            "Microsoft Corporation" => "Microsoft",
            _ => "ThirdParty",
        }),
        Pf::SignatureStatus => v.str(if img.company.is_empty() { "" } else { "Valid" }),
    }
}

fn lowercase(v: &mut Typed<'_>, s: &str) {
    let at = v.out.len();
    v.str(s);
    v.out[at..].make_ascii_lowercase();
}

fn file_field(ctx: &Ctx<'_>, f: Ff, v: &mut Typed<'_>) {
    let Some(file) = &ctx.file else {
        return if f == Ff::Size { v.null() } else { v.str("") };
    };
    let digest = (file.seed != 0).then_some(file.seed);
    match f {
        Ff::Name => v.str(&file.name),
        Ff::Path => v.str(&file.path),
        Ff::Sha1 => v.hex(digest.map(|d| d ^ 1), 40),
        Ff::Sha256 => v.hex(digest.filter(|d| d % 5 != 0).map(|d| d ^ 2), 64),
        Ff::Md5 => v.hex(digest.map(|d| d ^ 3), 32),
        Ff::Size => v.opt_int(file.size.map(|s| s as i64)),
        Ff::OriginUrl => v.str(&file.origin_url),
        Ff::OriginReferrer => v.str(if file.origin_url.is_empty() { "" } else { "https://www.bing.com/" }),
        Ff::OriginIp => v.str(&file.origin_ip),
        Ff::PrevName => v.str(file.previous.as_ref().map_or("", |p| p.0.as_str())),
        Ff::PrevPath => v.str(file.previous.as_ref().map_or("", |p| p.1.as_str())),
        Ff::Share => v.str(&file.share),
    }
}

pub(crate) fn account_field(a: Option<&Account>, f: Af, v: &mut Typed<'_>) {
    let Some(a) = a else { return v.str("") };
    match f {
        Af::Name => v.str(&a.name),
        Af::Domain => v.str(&a.domain),
        Af::Sid => v.str(&a.sid),
        Af::Upn => v.str(&a.upn),
        Af::ObjectId => v.str(&a.object_id),
    }
}

fn net_field(ctx: &Ctx<'_>, f: Nf, v: &mut Typed<'_>) {
    let Some(n) = &ctx.net else {
        return if matches!(f, Nf::RemotePort | Nf::LocalPort) { v.null() } else { v.str("") };
    };
    match f {
        Nf::RemoteIp => v.str(&n.remote_ip),
        Nf::RemotePort => v.opt_int(n.remote_port.map(i64::from)),
        Nf::RemoteUrl => v.str(&n.remote_url),
        Nf::LocalIp => v.str(&n.local_ip),
        Nf::LocalPort => v.opt_int(n.local_port.map(i64::from)),
        Nf::Protocol => v.str(n.protocol),
        Nf::LocalIpType => v.str(match n.local_ip.as_bytes().first() {
            None => "",
            Some(b'f') => "LinkLocal",
            Some(_) => "Private",
        }),
        Nf::RemoteIpType => v.str(n.remote_type),
        Nf::RemoteDeviceName => v.str(""),
    }
}
