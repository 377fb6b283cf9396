//! TDX TD attributes and service-TD binding, classified from a quote's TD report body
//! (Intel TDX Module ABI specification 348551, TDATTRIBUTES; quote v5 body type 3 is
//! the TD report 1.5, which adds `tee_tcb_svn2` and `mr_servicetd`).
//!
//! | bits | name | verdict |
//! |---|---|---|
//! | 0 | DEBUG | a policy decision (`allow_debug`) |
//! | 6:4 | TUD profiling bits | as DEBUG: the TD is under debug |
//! | 17 | SERVTD_EXT | service-TD binding: a policy decision (`allow_service_td`); refused in a TD report 1.0 |
//! | 28 | SEPT_VE_DISABLE | must be set, else the host can make the TD take #VE on pending pages: refused |
//! | 29 | MIGRATABLE | refused: a migration TD can move the TD's state |
//! | 1–3, 7–15, 23–26, 32–61 | reserved (must be zero, ABI 348551-008US table 3.23) | refused |
//!
//! A non-zero `mr_servicetd` (TD report 1.5: "if there is one or more bound or
//! pre-bound service TDs, SERVTD_HASH is the SHA384 hash of the TDINFO_STRUCTs of those
//! service TDs bound; else 0", Intel's `sgx_quote_5.h`) also means a service TD is bound,
//! and so does a non-zero current service-TD hash of a TD report 1.5ex (body type 4,
//! `curr_server_td_hash` at body offset 829), which records bindings made after the TD
//! was created. The other bits (ICSSD, LASS, PKS, KL, TPA, PERFMON) are reported as
//! claims only.

use dcap_qvl::quote::Report;

/// The reserved TD attribute bits, which must be zero.
const RESERVED: u64 = ones(1, 3) | ones(7, 15) | ones(23, 26) | ones(32, 61);

const fn ones(lo: u32, hi: u32) -> u64 {
    (u64::MAX << lo) & (u64::MAX >> (63 - hi))
}

const fn bit(n: u32) -> u64 {
    1 << n
}

/// What a TD report body says about the TD's attributes and service TDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TdClass {
    /// TD_ATTRIBUTES as a little-endian integer.
    pub attributes: u64,
    /// `td10`, `td15` or `td15ex`: the body's layout.
    pub body: &'static str,
    /// DEBUG or any TUD profiling bit (7:4): the host can read the TD.
    pub debug: bool,
    pub sept_ve_disable: bool,
    pub migratable: bool,
    pub servtd_ext: bool,
    /// `mr_servicetd` (or a 1.5ex body's initial or current service-TD hash) is not
    /// all zero.
    pub mr_servicetd_set: bool,
}

impl TdClass {
    /// Classifies a TD report body; `None` for an SGX enclave report.
    pub fn of(report: &Report) -> Option<TdClass> {
        let td = report.as_td10()?;
        let a = u64::from_le_bytes(td.td_attributes);
        let set = |h: &[u8]| h.iter().any(|&b| b != 0);
        let (body, mr_servicetd_set) = match report {
            Report::TD10(_) => ("td10", false),
            Report::TD15(r) => ("td15", set(&r.mr_service_td)),
            Report::TD15Ex(r) => (
                "td15ex",
                set(&r.base.mr_service_td)
                    || set(&r.init_service_td_hash)
                    || set(&r.cur_service_td_hash),
            ),
            Report::SgxEnclave(_) => return None,
        };
        Some(TdClass {
            attributes: a,
            body,
            debug: a & (bit(0) | ones(4, 6)) != 0,
            sept_ve_disable: a & bit(28) != 0,
            migratable: a & bit(29) != 0,
            servtd_ext: a & bit(17) != 0,
            mr_servicetd_set,
        })
    }

    /// A service TD is bound to this TD (SERVTD_EXT, or a non-zero `mr_servicetd`).
    pub fn service_td_bound(&self) -> bool {
        self.servtd_ext || self.mr_servicetd_set
    }

    /// The attribute errors that no policy can accept, each named; empty when none.
    pub fn refusals(&self) -> Vec<String> {
        let mut out = Vec::new();
        let reserved = self.attributes & RESERVED;
        if reserved != 0 {
            out.push(format!(
                "reserved TD attribute bits {reserved:#018x} are set"
            ));
        }
        if !self.sept_ve_disable {
            out.push(
                "SEPT_VE_DISABLE (bit 28) is clear: the host can inject #VE on pending pages"
                    .into(),
            );
        }
        if self.migratable {
            out.push("MIGRATABLE (bit 29) is set: a migration TD can export the TD".into());
        }
        if self.servtd_ext && self.body == "td10" {
            out.push(
                "SERVTD_EXT (bit 17) is set in a TD report 1.0 (a TD with service TDs \
                 gets a v5 quote)"
                    .into(),
            );
        }
        out
    }

    /// The claims: `tdx_report_body`, `tdx_sept_ve_disable`, `tdx_migratable`,
    /// `tdx_servtd_ext`, `tdx_service_td_bound` and the remaining named bits.
    pub(crate) fn add_claims(&self, v: &mut crate::Verified) {
        let a = self.attributes;
        v.text("tdx_report_body", self.body)
            .bool("tdx_sept_ve_disable", self.sept_ve_disable)
            .bool("tdx_migratable", self.migratable)
            .bool("tdx_servtd_ext", self.servtd_ext)
            .bool("tdx_service_td_bound", self.service_td_bound())
            .bool("tdx_icssd", a & bit(16) != 0)
            .bool("tdx_lass", a & bit(27) != 0)
            .bool("tdx_pks", a & bit(30) != 0)
            .bool("tdx_kl", a & bit(31) != 0)
            .bool("tdx_tpa", a & bit(62) != 0)
            .bool("tdx_perfmon", a & bit(63) != 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Policy, Tee};
    use dcap_qvl::quote::{Quote, TDReport15};

    /// The real TDX v4 quote's body (TD report 1.0, TD_ATTRIBUTES 0x10000000:
    /// SEPT_VE_DISABLE only).
    fn fixture_body() -> Report {
        let q =
            std::fs::read(format!("{}/testdata/tdx_quote", env!("CARGO_MANIFEST_DIR"))).unwrap();
        Quote::parse(&q).unwrap().report
    }

    fn with_attributes(report: &Report, attributes: u64) -> Report {
        let mut td = *report.as_td10().unwrap();
        td.td_attributes = attributes.to_le_bytes();
        Report::TD10(td)
    }

    #[test]
    fn the_real_tds_attributes_are_clean() {
        let c = TdClass::of(&fixture_body()).unwrap();
        assert_eq!(c.attributes, 0x1000_0000);
        assert_eq!(c.body, "td10");
        assert!(c.sept_ve_disable && !c.debug && !c.migratable);
        assert!(!c.service_td_bound());
        assert!(c.refusals().is_empty());
    }

    #[test]
    fn each_attribute_error_is_named() {
        let body = fixture_body();
        let class = |a: u64| TdClass::of(&with_attributes(&body, a)).unwrap();
        assert!(class(0x1000_0001).debug, "DEBUG");
        assert!(class(0x1000_0010).debug, "TUD profiling bit 4");
        assert!(
            class(0x1000_0001).refusals().is_empty(),
            "debug: policy only"
        );
        assert_eq!(
            class(0).refusals(),
            ["SEPT_VE_DISABLE (bit 28) is clear: the host can inject #VE on pending pages"]
        );
        assert_eq!(
            class(0x3000_0000).refusals(),
            ["MIGRATABLE (bit 29) is set: a migration TD can export the TD"]
        );
        assert_eq!(
            class(0x1000_0000 | 1 << 40).refusals(),
            ["reserved TD attribute bits 0x0000010000000000 are set"]
        );
        assert_eq!(class(0x1002_0000).refusals().len(), 1, "SERVTD_EXT in td10");
        // Every reserved bit, and no defined one, is refused as reserved.
        for b in 0..64u32 {
            let reserved = class(0x1000_0000 | 1 << b)
                .refusals()
                .iter()
                .any(|r| r.starts_with("reserved"));
            let defined = [
                0, 4, 5, 6, 16, 17, 18, 19, 20, 21, 22, 27, 28, 29, 30, 31, 62, 63,
            ];
            assert_eq!(reserved, !defined.contains(&b), "bit {b}");
        }
    }

    /// A TD report 1.5 (quote v5, body type 3) bound to a service TD: reported, refused
    /// by the default policy, accepted with `allow_service_td`.
    #[test]
    fn a_service_td_binding_is_a_policy_decision() {
        let base = *fixture_body().as_td10().unwrap();
        let bound = Report::TD15(TDReport15 {
            base,
            tee_tcb_svn2: [0; 16],
            mr_service_td: [0xab; 48],
        });
        let c = TdClass::of(&bound).unwrap();
        assert_eq!(c.body, "td15");
        assert!(c.mr_servicetd_set && c.service_td_bound());
        assert!(c.refusals().is_empty());

        let mut v = crate::dcap::body_claims(Tee::TdxEcdsa, &bound).unwrap();
        v.tcb_status = Some("UpToDate".into());
        let v = v.finish();
        assert_eq!(v.claims["tdx_service_td_bound"].canonical(), ["true"]);
        assert_eq!(v.claims["tdx_mr_servicetd"].canonical(), ["ab".repeat(48)]);
        assert_eq!(v.claims["tdx_report_body"].canonical(), ["td15"]);
        assert_eq!(
            Policy::default().appraise(&v).reasons,
            [
                "the TD is bound to a service TD (SERVTD_EXT or mr_servicetd); the policy \
              does not allow service TDs"
            ]
        );
        let allow = Policy {
            allow_service_td: true,
            ..Policy::default()
        };
        assert!(allow.appraise(&v).accepted);

        // Unbound TD 1.5: nothing to decide.
        let unbound = Report::TD15(TDReport15 {
            base,
            tee_tcb_svn2: [0; 16],
            mr_service_td: [0; 48],
        });
        let mut v = crate::dcap::body_claims(Tee::TdxEcdsa, &unbound).unwrap();
        v.tcb_status = Some("UpToDate".into());
        assert!(Policy::default().appraise(&v.finish()).accepted);
    }

    /// In dcap-qvl's real TD 1.5ex quote every service-TD hash is zero; a service TD
    /// bound after creation shows only in the current hash (body offset 829).
    #[test]
    fn a_td15ex_current_service_td_binding_counts() {
        let q = std::fs::read(format!(
            "{}/testdata/tdx_quote_td15ex",
            env!("CARGO_MANIFEST_DIR")
        ))
        .unwrap();
        let report = Quote::parse(&q).unwrap().report;
        let c = TdClass::of(&report).unwrap();
        assert_eq!(c.body, "td15ex");
        assert!(!c.service_td_bound());
        let Report::TD15Ex(mut ex) = report else {
            panic!("not a 1.5ex body")
        };
        ex.cur_service_td_hash = [0x5a; 48];
        assert!(TdClass::of(&Report::TD15Ex(ex)).unwrap().service_td_bound());
    }
}
