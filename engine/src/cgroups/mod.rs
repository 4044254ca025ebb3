//! Cgroups: v2 (target) with v1 fallback for hybrid hosts.
