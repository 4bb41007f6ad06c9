//! Mail: one message per record of `EmailEvents`, `EmailAttachmentInfo`, `EmailUrlInfo`,
//! `EmailPostDeliveryEvents` and `UrlClickEvents`, with sender, recipient, verdicts, URL and
//! attachment that agree with each other.

use rand::{Rng, rngs::SmallRng};

use crate::{
    columns::Typed,
    json::{Obj, fnv, guid, push_hex},
    pools::{DOC_EXTENSIONS, EMAIL_SUBJECTS, EXTERNAL_DOMAINS, FILE_STEMS, FIRST_NAMES, LAST_NAMES, URL_PATHS},
    scenario::{Ctx, public_ip},
    world::{UPN_SUFFIX, World, pick, pick_w},
};

/// One mail message.
#[derive(Debug, Default)]
pub(crate) struct Mail {
    pub network_message_id: String,
    pub internet_message_id: String,
    pub sender: String,
    pub sender_name: String,
    pub sender_domain: String,
    pub sender_object_id: String,
    pub sender_ip: String,
    pub direction: &'static str,
    pub subject: &'static str,
    /// "", "Phish", "Malware", "Spam"
    pub threat: &'static str,
    pub url: String,
    pub url_domain: String,
    pub attachment: String,
    pub attachment_ext: &'static str,
}

/// Draws a message received (mostly) by `ctx.user`.
pub(crate) fn message(world: &World, rng: &mut SmallRng) -> Mail {
    let direction = pick(rng, &["Inbound", "Inbound", "Inbound", "Intra-org", "Outbound"]);
    let (sender, sender_name, sender_domain, sender_object_id) = if direction == "Inbound" {
        let domain = pick(rng, EXTERNAL_DOMAINS);
        let (g, s) = (pick(rng, FIRST_NAMES), pick(rng, LAST_NAMES));
        let local = if rng.random_bool(0.2) {
            "no-reply".to_string()
        } else {
            format!("{}.{}", g.to_ascii_lowercase(), s.to_ascii_lowercase())
        };
        (format!("{local}@{domain}"), format!("{g} {s}"), domain.to_string(), String::new())
    } else {
        let u = world.pick_user(rng);
        (u.upn.clone(), u.display.clone(), UPN_SUFFIX.to_string(), u.object_id.clone())
    };
    let threat =
        if direction == "Inbound" { pick_w(rng, &[("", 90), ("Spam", 6), ("Phish", 3), ("Malware", 1)]) } else { "" };
    let url_domain = if threat == "Phish" {
        pick(rng, &["mail-secure-login.com", "invoice-portal.info", "cdn-update-check.xyz"]).to_string()
    } else {
        pick(rng, &["contoso.sharepoint.com", "www.linkedin.com", "docusign.net", "aka.ms", "zoom.us", &sender_domain])
            .to_string()
    };
    let mut imid = String::from("<");
    push_hex(&mut imid, rng.random(), 24);
    imid.make_ascii_uppercase();
    imid.push('@');
    imid.push_str(pick(
        rng,
        &[
            "AM0PR08MB5432.eurprd08.prod.outlook.com",
            "BN8PR12MB3411.namprd12.prod.outlook.com",
            "mail.gmail.com",
            "smtp.fabrikam.com",
        ],
    ));
    imid.push('>');
    let ext = pick_w(rng, DOC_EXTENSIONS);
    Mail {
        network_message_id: guid(rng.random()),
        internet_message_id: imid,
        sender_ip: public_ip(rng).replace(':', "."),
        subject: pick(rng, EMAIL_SUBJECTS),
        url: format!("https://{url_domain}{}", pick(rng, URL_PATHS)),
        attachment: format!("{}.{ext}", pick(rng, FILE_STEMS)),
        attachment_ext: ext,
        direction,
        threat,
        url_domain,
        sender,
        sender_name,
        sender_domain,
        sender_object_id,
    }
}

/// Writes a mail column; false when `name` is not one.
pub(crate) fn write(name: &str, ctx: &Ctx<'_>, rng: &mut SmallRng, v: &mut Typed<'_>) -> bool {
    let Some(m) = &ctx.extra.mail else { return false };
    let u = ctx.user;
    let bad = !m.threat.is_empty();
    match name {
        "NetworkMessageId" => v.str(&m.network_message_id),
        "InternetMessageId" => v.str(&m.internet_message_id),
        "SenderFromAddress" | "SenderMailFromAddress" => v.str(&m.sender),
        "SenderDisplayName" => v.str(&m.sender_name),
        "SenderObjectId" => v.str_or_null(&m.sender_object_id),
        "SenderFromDomain" | "SenderMailFromDomain" => v.str(&m.sender_domain),
        "SenderIPv4" => v.str(&m.sender_ip),
        "SenderIPv6" => v.str(""),
        "RecipientEmailAddress" | "To" => v.str(&u.upn),
        "RecipientObjectId" => v.str(&u.object_id),
        "RecipientDomain" => v.str(UPN_SUFFIX),
        "Cc" | "DistributionList" | "ExchangeTransportRule" | "ForwardingInformation" => v.str(""),
        "Subject" | "EmailSubject" => v.str(m.subject),
        "EmailClusterId" => v.int(rng.random_range(1_000_000_000..999_999_999_999)),
        "EmailDirection" => v.str(m.direction),
        "DeliveryAction" | "LatestDeliveryAction" => v.str(match m.threat {
            "" => "Delivered",
            "Spam" => "Junked",
            _ => pick(rng, &["Blocked", "Delivered", "Replaced"]),
        }),
        "DeliveryLocation" | "LatestDeliveryLocation" | "SourceLocation" => v.str(match m.threat {
            "" => "Inbox/folder",
            "Spam" => "Junk folder",
            _ => pick(rng, &["Quarantine", "Inbox/folder", "Deleted items"]),
        }),
        "ThreatTypes" | "OriginalThreatTypes" => v.str(m.threat),
        "ThreatNames" => v.str(if m.threat == "Malware" { "Trojan:JS/Nemucod!MSR" } else { "" }),
        "ThreatClassification" => v.str(if bad { "Phish" } else { "" }),
        "DetectionMethods" | "OriginalDetectionMethods" => v.str(match m.threat {
            "" => "",
            "Phish" => "{\"Phish\":[\"URL detonation reputation\",\"Advanced filter\"]}",
            "Malware" => "{\"Malware\":[\"File detonation\",\"Antimalware protection\"]}",
            _ => "{\"Spam\":[\"Mixed analysis detection\"]}",
        }),
        "ConfidenceLevel" | "OriginalConfidenceLevel" => {
            v.str(if bad { "{\"Phish\":\"High\",\"Spam\":\"Normal\"}" } else { "{\"Phish\":null,\"Spam\":\"Normal\"}" })
        }
        "BulkComplaintLevel" => v.int(rng.random_range(0..8)),
        "EmailAction" => v.str(if m.threat == "Spam" { "Move message to Junk Email folder" } else { "" }),
        "EmailActionPolicy" => v.str(if bad { "Antispam" } else { "" }),
        "EmailActionPolicyGuid" => v.str(""),
        "AuthenticationDetails" => v.str(if bad {
            "{\"SPF\":\"fail\",\"DKIM\":\"none\",\"DMARC\":\"fail\",\"CompAuth\":\"fail\"}"
        } else {
            "{\"SPF\":\"pass\",\"DKIM\":\"pass\",\"DMARC\":\"pass\",\"CompAuth\":\"pass\"}"
        }),
        "AttachmentCount" => v.int(rng.random_range(0..3)),
        "UrlCount" => v.int(rng.random_range(0..12)),
        "EmailLanguage" => v.str(pick(rng, &["en", "en", "de", "fr", "es"])),
        "Connectors" => v.str(""),
        "OrgLevelAction" | "UserLevelAction" => v.str(if bad { "Move to JMF" } else { "" }),
        "OrgLevelPolicy" | "UserLevelPolicy" => v.str(""),
        "Context" => v.str(""),
        "EmailSize" => v.int(rng.random_range(4_000..2_500_000)),
        "IsFirstContact" => v.int(i64::from(rng.random_bool(0.1))),
        "Topics" => v.str(pick(rng, &["", "[\"Invoices\"]", "[\"Meetings\"]"])),
        "ReportId" => {
            let mut s = m.network_message_id.clone();
            s.push('-');
            s.push_str(&rng.random_range(10_000_000_000_000_000u64..99_999_999_999_999_999).to_string());
            s.push_str("-0");
            v.str(&s)
        }
        "AdditionalFields" => v.json(&Obj::new().str("Recipients", &u.upn).end()),
        // Attachments.
        "FileName" => v.str(&m.attachment),
        "FileType" => v.str(m.attachment_ext),
        "SHA256" => v.hex(Some(fnv(&m.attachment) ^ 2), 64),
        "FileSize" => v.int((fnv(&m.attachment) % 3_000_000 + 2048) as i64),
        // URLs.
        "Url" => v.str(&m.url),
        "UrlDomain" => v.str(&m.url_domain),
        "UrlLocation" => v.str(pick(rng, &["Body", "Body", "Attachment", "Subject", "QRCode"])),
        "UrlChainId" => v.str(""),
        "UrlChainPosition" => v.int(0),
        "UrlChain" => v.str(&format!("[\"{}\"]", m.url)),
        // Post-delivery and clicks.
        "Action" => v.str(pick(rng, &["Moved to deleted items", "Soft delete", "Hard delete", "Moved to junk folder"])),
        "ActionTrigger" => v.str(pick(rng, &["SpecialAction", "AdminAction", "Zap"])),
        "ActionResult" => v.str("Success"),
        "Workload" => v.str(pick(rng, &["Email", "Email", "Teams", "Office"])),
        "IsClickedThrough" => v.bool(rng.random_bool(0.05)),
        "AppName" => v.str(pick(rng, &["Outlook", "Teams", "Word"])),
        "AppVersion" => v.str("16.0.18129.20158"),
        "SourceId" => v.str(""),
        "IPAddress" => v.str(&ctx.extra.ip),
        "AccountUpn" => v.str(&u.upn),
        _ => return false,
    }
    true
}
