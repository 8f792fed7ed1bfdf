//! The dependency rules between steps on different hosts: the control plane
//! needs an etcd quorum, nodes and addons need a control plane. Pure: given
//! which hosts are still ok, says why a step cannot run on a host.

use crate::plan::{Role, Step};
use std::collections::BTreeSet;

/// How many etcd members and masters of the run are still ok.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Standing {
    pub etcd_ok: usize,
    pub etcd_total: usize,
    pub masters_ok: usize,
    pub masters_total: usize,
}

impl Standing {
    /// Counts `(roles, still ok)` of every host of the run.
    pub fn of<'a>(hosts: impl IntoIterator<Item = (&'a BTreeSet<Role>, bool)>) -> Standing {
        let mut s = Standing::default();
        for (roles, ok) in hosts {
            if roles.contains(&Role::Etcd) {
                s.etcd_total += 1;
                s.etcd_ok += usize::from(ok);
            }
            if roles.contains(&Role::Master) {
                s.masters_total += 1;
                s.masters_ok += usize::from(ok);
            }
        }
        s
    }
}

/// Why `step` cannot run now on a host with `roles`; None when it can.
pub fn blocked(step: Step, roles: &BTreeSet<Role>, s: &Standing) -> Option<String> {
    match step {
        Step::ControlPlane
            if roles.contains(&Role::Master)
                && s.etcd_total > 0
                && s.etcd_ok <= s.etcd_total / 2 =>
        {
            Some(format!(
                "etcd has no quorum ({} of {} members deployed)",
                s.etcd_ok, s.etcd_total
            ))
        }
        Step::Nodes | Step::Addons if s.masters_total > 0 && s.masters_ok == 0 => {
            Some("no control plane host succeeded".into())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles(r: &[Role]) -> BTreeSet<Role> {
        r.iter().copied().collect()
    }

    /// Three hosts that are etcd members and masters, the third also a
    /// node; `ok[i]` says whether host i is still ok.
    fn three(ok: [bool; 3]) -> Standing {
        let r = [
            roles(&[Role::Etcd, Role::Master]),
            roles(&[Role::Etcd, Role::Master]),
            roles(&[Role::Etcd, Role::Master, Role::Node]),
        ];
        Standing::of(r.iter().zip(ok))
    }

    #[test]
    fn without_etcd_quorum_every_master_skips_the_control_plane_and_says_why() {
        let master = roles(&[Role::Etcd, Role::Master]);
        for ok in [
            [true, false, false],
            [false, false, true],
            [false, false, false],
        ] {
            let s = three(ok);
            let why = blocked(Step::ControlPlane, &master, &s)
                .unwrap_or_else(|| panic!("{ok:?}: control plane not skipped"));
            let up = ok.iter().filter(|o| **o).count();
            assert_eq!(
                why,
                format!("etcd has no quorum ({up} of 3 members deployed)")
            );
        }
    }

    #[test]
    fn with_a_quorum_the_control_plane_proceeds() {
        let master = roles(&[Role::Etcd, Role::Master]);
        for ok in [[true, true, false], [false, true, true], [true, true, true]] {
            assert_eq!(
                blocked(Step::ControlPlane, &master, &three(ok)),
                None,
                "{ok:?}"
            );
        }
        // An even count needs more than half: 2 of 4 is no quorum.
        let four = Standing {
            etcd_ok: 2,
            etcd_total: 4,
            masters_ok: 2,
            masters_total: 2,
        };
        assert!(blocked(Step::ControlPlane, &master, &four).is_some());
    }

    #[test]
    fn hosts_that_are_not_masters_do_not_wait_for_etcd() {
        let node = roles(&[Role::Node]);
        assert_eq!(blocked(Step::ControlPlane, &node, &three([false; 3])), None);
        // No etcd in the run (a --limit to nodes): nothing to wait for.
        let no_etcd = Standing::of([(&node, true)]);
        assert_eq!(
            blocked(Step::ControlPlane, &roles(&[Role::Master]), &no_etcd),
            None
        );
    }

    #[test]
    fn without_any_control_plane_nodes_and_addons_are_skipped() {
        let node = roles(&[Role::Node]);
        let master = roles(&[Role::Etcd, Role::Master]);
        let none = three([false, false, false]);
        for step in [Step::Nodes, Step::Addons] {
            for r in [&node, &master] {
                assert_eq!(
                    blocked(step, r, &none).as_deref(),
                    Some("no control plane host succeeded"),
                    "{step:?}"
                );
            }
            // One healthy control plane host is enough.
            assert_eq!(blocked(step, &node, &three([false, false, true])), None);
        }
    }

    #[test]
    fn earlier_steps_never_wait_for_other_hosts() {
        let none = three([false, false, false]);
        let all = roles(&[Role::Etcd, Role::Master, Role::Node]);
        for step in [
            Step::Baseline,
            Step::Binaries,
            Step::Containerd,
            Step::Registry,
            Step::Etcd,
            Step::AccessLayer,
        ] {
            assert_eq!(blocked(step, &all, &none), None, "{step:?}");
        }
    }

    #[test]
    fn standing_counts_roles_and_health() {
        assert_eq!(
            three([true, false, true]),
            Standing {
                etcd_ok: 2,
                etcd_total: 3,
                masters_ok: 2,
                masters_total: 3,
            }
        );
    }
}
