//! Seccomp: Docker default profile, Docker-format profile parsing, BPF compile + cache, install.
