//! Placeholder substitution, as `flash.sh` and meta-tegra do with `sed`
//! before NVIDIA's tools see a layout (docs/spec/flash-layout.md §1.3, §5.2).
//!
//! Every attribute value and element text is rewritten: each occurrence of a
//! token is replaced, longest token first at each position, in one pass
//! (a replacement is never rescanned). `--set NAME=VALUE` adds or overrides
//! tokens; the built-in defaults are in [`PLACEHOLDERS`].

#![deny(clippy::indexing_slicing)]

use super::xml::FlashLayout;
use super::Soc;

/// Where a placeholder's default value comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlaceholderDefault {
    /// Always this value.
    Fixed(&'static str),
    /// T186 value, T210 value; no default for other SoCs (their layouts do
    /// not use the token).
    PerSoc {
        /// On T186 (TX2).
        t186: &'static str,
        /// On T210 (TX1, Nano).
        t210: &'static str,
    },
    /// No safe default: the operator must give it with `--set`.
    Required,
}

/// A known placeholder token.
#[derive(Debug, Clone, Copy)]
pub struct Placeholder {
    /// The token as it appears in NVIDIA's layouts.
    pub token: &'static str,
    /// Its default.
    pub default: PlaceholderDefault,
    /// Why that default (shown by `layout --help` and in the README).
    pub why: &'static str,
}

/// Placeholders and their defaults. Sizes follow `flash.sh` (R32.7.2) and
/// meta-tegra; names follow both, except `FBNAME` (see its entry).
pub const PLACEHOLDERS: &[Placeholder] = &[
    Placeholder {
        token: "APPSIZE",
        default: PlaceholderDefault::Required,
        why: "rootfs partition size in bytes (ROOTFSSIZE / ROOTFSPART_SIZE) is board- and distro-specific",
    },
    Placeholder {
        token: "PPTSIZE",
        default: PlaceholderDefault::PerSoc {
            t186: "2097152",
            t210: "16896",
        },
        why: "primary GPT size: flash.sh and meta-tegra use 2097152 on TX2 (BOOTPARTLIMIT - BOOTPARTSIZE) and 16896 on t210; it moves every partition, so it must match how the board's boot chain was built",
    },
    Placeholder {
        token: "LNXSIZE",
        default: PlaceholderDefault::Fixed("83886080"),
        why: "kernel partition size, flash.sh and meta-tegra default",
    },
    Placeholder {
        token: "RECSIZE",
        default: PlaceholderDefault::Fixed("66060288"),
        why: "recovery kernel size, flash.sh REC_SIZE_DEF",
    },
    Placeholder {
        token: "RECROOTFSSIZE",
        default: PlaceholderDefault::Fixed("314572800"),
        why: "recovery rootfs size, meta-tegra default",
    },
    Placeholder {
        token: "APPUUID_b",
        default: PlaceholderDefault::Fixed(""),
        why: "empty: a random unique GUID, as flash.sh does unless a rootfs UUID is requested",
    },
    Placeholder {
        token: "APPUUID",
        default: PlaceholderDefault::Fixed(""),
        why: "empty: a random unique GUID, as flash.sh does unless a rootfs UUID is requested",
    },
    name("MBPNAME", "mts-bootpack"),
    name("MPBNAME", "mts-preboot"),
    name("MB1NAME", "mb1"),
    name("MB2NAME", "mb2"),
    name("SPENAME", "spe-fw"),
    name("TBCNAME", "cpu-bootloader"),
    name("TBCDTB-NAME", "bootloader-dtb"),
    name("TOSNAME", "secure-os"),
    name("BPFNAME", "bpmp-fw"),
    name("BPFDTB-NAME", "bpmp-fw-dtb"),
    name("SCENAME", "sce-fw"),
    name("SC7NAME", "sc7"),
    name("LNXNAME", "kernel"),
    name("KERNELDTB-NAME", "kernel-dtb"),
    name("RECNAME", "recovery"),
    name("RECDTB-NAME", "recovery-dtb"),
    name("BOOTCTRLNAME", "kernel-bootctrl"),
    name("DRAMECCNAME", "dram-ecc-fw"),
    name("BADPAGENAME", "badpage-fw"),
    Placeholder {
        token: "FBNAME",
        default: PlaceholderDefault::Fixed("fusebypass"),
        why: "meta-tegra always renames it; stock flash.sh leaves FBNAME literal unless a fuse-bypass file is used (--set FBNAME=FBNAME to match a stock-flashed TX2)",
    },
    Placeholder {
        token: "EFISIZE",
        default: PlaceholderDefault::Required,
        why: "EFI partition size of some t210 layouts; no documented default",
    },
];

const fn name(token: &'static str, value: &'static str) -> Placeholder {
    Placeholder {
        token,
        default: PlaceholderDefault::Fixed(value),
        why: "partition name used by flash.sh and meta-tegra",
    }
}

/// meta-tegra's extra renames for t210 layouts (applied to t210 layouts only).
pub const T210_RENAMES: &[(&str, &str)] = &[
    ("DXB", "DTB"),
    ("TXS", "TOS"),
    ("EXS", "EKS"),
    ("NXC", "NVC"),
    ("TXC", "TBC"),
    ("WX0", "WB0"),
    ("BXF", "BPF"),
];

/// The token → value table for one layout.
#[derive(Debug, Clone)]
pub struct Substitutions {
    /// (token, value), longest token first.
    pairs: Vec<(String, String)>,
    /// Tokens the operator set explicitly (never reported as left over).
    explicit: Vec<String>,
}

/// Parses `NAME=VALUE` arguments of `--set`.
pub fn parse_assignments(args: &[String]) -> Result<Vec<(String, String)>, String> {
    args.iter()
        .map(|a| match a.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.trim().to_owned())),
            _ => Err(format!("--set '{a}': expected NAME=VALUE")),
        })
        .collect()
}

impl Substitutions {
    /// Builds the table: the operator's values, then the defaults for `soc`.
    pub fn new(user: &[(String, String)], soc: Option<Soc>) -> Substitutions {
        // A token set twice (site config, then command line) takes the later value.
        let mut pairs: Vec<(String, String)> = Vec::new();
        for (t, v) in user {
            match pairs.iter_mut().find(|(k, _)| k == t) {
                Some(p) => p.1 = v.clone(),
                None => pairs.push((t.clone(), v.clone())),
            }
        }
        for p in PLACEHOLDERS {
            if pairs.iter().any(|(t, _)| t == p.token) {
                continue;
            }
            let value = match (p.default, soc) {
                (PlaceholderDefault::Fixed(v), _) => Some(v),
                (PlaceholderDefault::PerSoc { t186, .. }, Some(Soc::T186)) => Some(t186),
                (PlaceholderDefault::PerSoc { t210, .. }, Some(Soc::T210)) => Some(t210),
                _ => None,
            };
            if let Some(v) = value {
                pairs.push((p.token.to_owned(), v.to_owned()));
            }
        }
        if soc == Some(Soc::T210) {
            for (t, v) in T210_RENAMES {
                if !pairs.iter().any(|(k, _)| k == t) {
                    pairs.push(((*t).to_owned(), (*v).to_owned()));
                }
            }
        }
        pairs.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.0.cmp(&b.0)));
        Substitutions {
            pairs,
            explicit: user.iter().map(|(t, _)| t.clone()).collect(),
        }
    }

    /// Rewrites one value.
    pub fn apply(&self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        'outer: while !rest.is_empty() {
            for (token, value) in &self.pairs {
                if !token.is_empty() && rest.starts_with(token.as_str()) {
                    out.push_str(value);
                    rest = rest.get(token.len()..).unwrap_or("");
                    continue 'outer;
                }
            }
            let mut chars = rest.chars();
            if let Some(c) = chars.next() {
                out.push(c);
            }
            rest = chars.as_str();
        }
        out
    }

    /// Rewrites every attribute and element text of a layout.
    pub fn apply_to(&self, layout: &mut FlashLayout) {
        for dev in &mut layout.devices {
            for (_, v) in &mut dev.attrs {
                *v = self.apply(v);
            }
            dev.kind = self.apply(&dev.kind);
            for p in &mut dev.partitions {
                for (_, v) in p.attrs.iter_mut().chain(p.fields.iter_mut()) {
                    *v = self.apply(v);
                }
            }
        }
    }

    /// The first known placeholder token still in `s` that the operator did
    /// not set explicitly (after substitution, that means it had no value).
    pub fn leftover(&self, s: &str) -> Option<&'static str> {
        PLACEHOLDERS
            .iter()
            .map(|p| p.token)
            .filter(|t| !self.explicit.iter().any(|e| e == t))
            .find(|t| s.contains(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(user: &[(&str, &str)], soc: Option<Soc>) -> Substitutions {
        let u: Vec<(String, String)> = user
            .iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect();
        Substitutions::new(&u, soc)
    }

    #[test]
    fn names_and_sizes_are_substituted_sed_like() {
        let s = subs(&[("APPSIZE", "1024")], Some(Soc::T186));
        assert_eq!(s.apply("MBPNAME_b"), "mts-bootpack_b");
        assert_eq!(s.apply("TBCDTB-NAME"), "bootloader-dtb");
        assert_eq!(s.apply("KERNELDTB-NAME_b"), "kernel-dtb_b");
        assert_eq!(s.apply("RECNAME_alt"), "recovery_alt");
        assert_eq!(s.apply(" APPSIZE "), " 1024 ");
        assert_eq!(s.apply("PPTSIZE"), "2097152");
        assert_eq!(s.apply("FBNAME"), "fusebypass");
        assert_eq!(s.apply("BMP"), "BMP");
    }

    #[test]
    fn the_longer_token_wins() {
        // APPUUID is a prefix of APPUUID_b; meta-tegra's single s,APPUUID,, made
        // "_b" of the latter. We delete both.
        let s = subs(&[], None);
        assert_eq!(s.apply("APPUUID_b"), "");
        assert_eq!(s.apply("APPUUID"), "");
        let s = subs(&[("APPUUID", "11111111-2222-3333-4444-555555555555")], None);
        assert_eq!(s.apply("APPUUID_b"), "");
    }

    #[test]
    fn the_later_assignment_wins() {
        let s = subs(&[("APPSIZE", "1"), ("APPSIZE", "2")], None);
        assert_eq!(s.apply("APPSIZE"), "2");
    }

    #[test]
    fn replacements_are_not_rescanned() {
        let s = subs(&[("A", "LNXNAME")], None);
        assert_eq!(s.apply("A"), "LNXNAME");
    }

    #[test]
    fn per_soc_defaults() {
        assert_eq!(subs(&[], Some(Soc::T210)).apply("PPTSIZE"), "16896");
        assert_eq!(subs(&[], Some(Soc::T194)).apply("PPTSIZE"), "PPTSIZE");
        assert_eq!(
            subs(&[("PPTSIZE", "16896")], Some(Soc::T186)).apply("PPTSIZE"),
            "16896"
        );
    }

    #[test]
    fn t210_renames_only_for_t210() {
        let s = subs(&[], Some(Soc::T210));
        assert_eq!(s.apply("BXF-DTB-1"), "BPF-DTB-1");
        assert_eq!(s.apply("DXB-1"), "DTB-1");
        assert_eq!(subs(&[], Some(Soc::T186)).apply("DXB"), "DXB");
    }

    #[test]
    fn leftovers_are_found_unless_set_explicitly() {
        let s = subs(&[], Some(Soc::T194));
        assert_eq!(s.leftover("APPSIZE"), Some("APPSIZE"));
        assert_eq!(s.leftover("PPTSIZE"), Some("PPTSIZE"));
        assert_eq!(s.leftover("mts-bootpack"), None);
        let s = subs(&[("FBNAME", "FBNAME")], Some(Soc::T186));
        assert_eq!(s.apply("FBNAME"), "FBNAME");
        assert_eq!(s.leftover("FBNAME"), None);
    }

    #[test]
    fn assignments_parse() {
        let a = parse_assignments(&["APPSIZE=1".into(), "X= y ".into()]).unwrap();
        assert_eq!(
            a,
            [("APPSIZE".into(), "1".into()), ("X".into(), "y".into())]
        );
        assert!(parse_assignments(&["novalue".into()]).is_err());
        assert!(parse_assignments(&["=1".into()]).is_err());
    }
}
