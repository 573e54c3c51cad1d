//! Operating-system integration for Airlock: installing the device CA into trust stores, service units and
//! proxy settings. It owns changes to the machine outside the agent's state directory and must never run
//! inside the hardened daemon. This crate is a placeholder until the installer issue lands.
