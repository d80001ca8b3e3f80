//! Integration tests: they run the real `frun` binary, as root, against real registries
//! (Debian's docker-registry) that `scripts/test.sh` starts on loopback inside a network
//! namespace of the test run, filled with images built by umoci, skopeo and Python.
//!
//! Outside CI a test whose registry or privileges are missing is skipped with a printed
//! reason; under CI (`CI=true`) it fails instead.

mod addr_reuse;
mod backup;
mod backup_progress;
mod backup_schedule;
mod backup_timeout;
mod boot;
mod ca_roots;
mod common;
mod cp_special;
mod cp_start;
mod cp_stopped;
mod credentials;
mod credentials_log;
mod demo;
mod events;
mod faults;
mod follow_cost;
mod holder;
mod hostile_run;
mod info;
mod limits;
mod log_colours;
mod logs;
mod metrics;
mod net;
mod oci;
mod oci_spec;
mod proxy_protocol;
mod pull;
mod reboot_pids;
mod refusals;
mod repair;
mod role_follow;
mod role_logs;
mod run;
mod stack_auth;
mod stats;
mod stats_stream;
mod swap;
mod swap_ports;
mod up;
mod volumes;
