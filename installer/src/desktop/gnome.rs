//! GNOME's proxy settings (`org.gnome.system.proxy` `mode` and `autoconfig-url`, per user in dconf)
//! through `gsettings`. Values are kept in GVariant text form (`'none'`), which `gsettings set`
//! takes back as they are.

use std::path::PathBuf;

use super::Saved;
use crate::cmd;
use crate::error::Result;

const SCHEMA: &str = "org.gnome.system.proxy";
const KEYS: [&str; 2] = ["mode", "autoconfig-url"];

fn gsettings() -> Result<PathBuf> {
    cmd::require("gsettings", "the GNOME proxy setting", "libglib2.0-bin")
}

pub fn backend() -> Option<&'static str> {
    cmd::find("gsettings").map(|_| "gnome")
}

fn get(g: &std::path::Path, key: &str) -> Result<String> {
    let out = cmd::run(g, ["get", SCHEMA, key])?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn set_pac(pac_url: &str) -> Result<Saved> {
    let g = gsettings()?;
    let mut values = Vec::new();
    for key in KEYS {
        values.push((key.to_string(), get(&g, key)?));
    }
    cmd::run(&g, ["set", SCHEMA, "autoconfig-url", pac_url])?;
    cmd::run(&g, ["set", SCHEMA, "mode", "auto"])?;
    Ok(Saved {
        backend: "gnome".into(),
        values,
    })
}

pub fn current_pac() -> Result<Option<String>> {
    let Some(g) = cmd::find("gsettings") else {
        return Ok(None);
    };
    if get(&g, "mode")? != "'auto'" {
        return Ok(None);
    }
    let url = get(&g, "autoconfig-url")?;
    Ok(Some(url.trim_matches('\'').to_string()))
}

pub fn restore(saved: &Saved) -> Result<()> {
    let g = gsettings()?;
    // The URL first, the mode last: never "auto" with someone else's URL half set.
    for (key, value) in saved.values.iter().rev() {
        cmd::run(&g, ["set", SCHEMA, key, value])?;
    }
    Ok(())
}
