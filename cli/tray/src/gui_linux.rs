//! The tray on Linux: tray-icon on the GTK 3 main loop (libayatana-appindicator: a
//! StatusNotifierItem where the desktop has a watcher, an XEmbed icon in a system tray otherwise).
//! A worker thread polls `airlock` and sends snapshots; a GTK timeout renders the newest one and
//! answers menu clicks. It owns the widgets; what they say comes from [`crate::model`].

use std::collections::HashMap;
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use gtk::glib;
use tray_icon::menu::{Menu, MenuEvent, MenuId, MenuItem, PredefinedMenuItem};
use tray_icon::{Icon, TrayIcon, TrayIconBuilder};

use crate::alerts::Alerts;
use crate::model::{self, Action, Model, Snapshot};
use crate::snapshot::Cli;
use crate::{actions, icon};

fn picture(state: &model::State) -> Result<Icon> {
    Icon::from_rgba(icon::rgba(state), icon::SIZE, icon::SIZE).map_err(|e| anyhow!("bad icon: {e}"))
}

fn menu_for(m: &Model) -> Result<(Menu, HashMap<MenuId, Action>)> {
    let menu = Menu::new();
    let mut ids = HashMap::new();
    for item in &m.items {
        match item {
            None => menu.append(&PredefinedMenuItem::separator())?,
            Some(i) => {
                let w = MenuItem::new(&i.label, i.action != Action::None, None);
                ids.insert(w.id().clone(), i.action);
                menu.append(&w)?;
            }
        }
    }
    Ok((menu, ids))
}

/// Runs the tray until Quit.
pub fn run(cli: Cli, every: Duration) -> Result<()> {
    gtk::init().map_err(|e| {
        anyhow!("cannot start GTK ({e}); is there a display (DISPLAY or WAYLAND_DISPLAY)?")
    })?;
    let (tx, rx) = mpsc::channel::<Snapshot>();
    let poller = cli.clone();
    std::thread::spawn(move || loop {
        let today = time::OffsetDateTime::now_utc().date().to_string();
        if tx.send(poller.snapshot(&today)).is_err() {
            return;
        }
        std::thread::sleep(every);
    });
    let first = model::build(&Snapshot::default(), time::OffsetDateTime::now_utc());
    let (menu, mut ids) = menu_for(&first)?;
    let tray: TrayIcon = TrayIconBuilder::new()
        .with_tooltip("Airlock: starting")
        .with_icon(picture(&first.state)?)
        .with_menu(Box::new(menu))
        .build()
        .map_err(|e| anyhow!("cannot show the tray icon: {e}"))?;
    let mut shown = first;
    let mut alerts = Alerts::new();
    let mut dashboard: Option<Child> = None;
    glib::timeout_add_local(Duration::from_millis(250), move || {
        let mut latest = None;
        while let Ok(s) = rx.try_recv() {
            latest = Some(s);
        }
        let now = Instant::now();
        if let Some(snap) = latest {
            for a in alerts.update(&snap.recent, snap.status.as_ref(), now) {
                actions::notify(a);
            }
            let m = model::build(&snap, time::OffsetDateTime::now_utc());
            if m != shown {
                if m.state != shown.state {
                    tracing::info!(state = m.state.word(), "tray state changed");
                    if let Err(e) = picture(&m.state)
                        .and_then(|i| tray.set_icon(Some(i)).map_err(|e| anyhow!("{e}")))
                    {
                        tracing::warn!(error = %e, "cannot change the tray icon");
                    }
                }
                let _ = tray.set_tooltip(Some(&m.tooltip));
                match menu_for(&m) {
                    Ok((menu, new_ids)) => {
                        tray.set_menu(Some(Box::new(menu)));
                        ids = new_ids;
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot rebuild the tray menu"),
                }
                shown = m;
            }
        }
        for a in alerts.flush(now) {
            actions::notify(a);
        }
        while let Ok(ev) = MenuEvent::receiver().try_recv() {
            match ids.get(&ev.id).copied().unwrap_or(Action::None) {
                Action::None => {}
                Action::OpenDashboard => {
                    if let Some(mut old) = dashboard.take() {
                        let _ = old.kill();
                        let _ = old.wait();
                    }
                    dashboard = actions::open_dashboard(&cli);
                }
                Action::CopyShellSetup => actions::copy_shell_setup(),
                Action::Pause(m) => actions::run_and_tell(
                    &cli,
                    vec!["pause".into(), "--minutes".into(), m.to_string()],
                ),
                Action::Resume => actions::run_and_tell(&cli, vec!["resume".into()]),
                Action::Quit => {
                    if let Some(mut d) = dashboard.take() {
                        let _ = d.kill();
                        let _ = d.wait();
                    }
                    gtk::main_quit();
                    return glib::ControlFlow::Break;
                }
            }
        }
        glib::ControlFlow::Continue
    });
    gtk::main();
    Ok(())
}
