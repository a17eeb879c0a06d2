//! `halo config convert`: prints a configuration directory in the other format — the legacy
//! files (`ha.cf`, `authkeys`, `haresources`, `ldirectord.cf`) as `halo.toml`, or `halo.toml`
//! as the legacy files. What the target cannot say goes to stderr as notes (and into the
//! output as comments where it helps), never silently away.
use anyhow::{bail, Context};
use halo_config::convert::{to_legacy, to_toml};
use halo_config::{Director, Model};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

pub fn convert(config_dir: &Path, to: Option<&str>, out: Option<&Path>) -> anyhow::Result<i32> {
    let loaded = match halo_config::load_dir(config_dir) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("invalid configuration in {}:\n{e}", config_dir.display());
            return Ok(1);
        }
    };
    for w in &loaded.warnings {
        eprintln!("warning: {w}");
    }
    let from_toml = config_dir.join(halo_config::halo_toml::FILE).exists();
    let to = to.unwrap_or(if from_toml { "legacy" } else { "toml" });
    let mut model = loaded.model;
    match to {
        "toml" => {
            if !from_toml {
                add_director_file(&mut model, config_dir);
            }
            let (text, notes) = to_toml(&model);
            for n in &notes {
                eprintln!("note: {n}");
            }
            match out {
                None => print!("{text}"),
                Some(dir) => {
                    if dir.join("ha.cf").exists() {
                        bail!(
                            "{} holds an ha.cf: halo refuses a directory with both halo.toml and ha.cf; write elsewhere or remove it",
                            dir.display()
                        );
                    }
                    std::fs::create_dir_all(dir)?;
                    write(&dir.join(halo_config::halo_toml::FILE), &text, 0o600)?;
                    if let Some(d) = model.director.as_ref().filter(|d| d.file.is_some()) {
                        copy_director(d, config_dir, dir)?;
                    }
                }
            }
        }
        "legacy" => {
            let (files, notes) = to_legacy(&model);
            for n in &notes {
                eprintln!("note: {n}");
            }
            let mut sections: Vec<(String, String, u32)> =
                vec![("ha.cf".into(), files.ha_cf, 0o644), ("authkeys".into(), files.authkeys, 0o600)];
            if let Some(h) = files.haresources {
                sections.push(("haresources".into(), h, 0o644));
            }
            if let Some((name, text)) = files.ldirectord {
                sections.push((name, text, 0o644));
            }
            match out {
                None => {
                    for (i, (name, text, _)) in sections.iter().enumerate() {
                        if i > 0 {
                            println!();
                        }
                        println!("==> {name} <==");
                        print!("{text}");
                    }
                }
                Some(dir) => {
                    if dir.join(halo_config::halo_toml::FILE).exists() {
                        bail!(
                            "{} holds a halo.toml: halo refuses a directory with both halo.toml and ha.cf; write elsewhere",
                            dir.display()
                        );
                    }
                    std::fs::create_dir_all(dir)?;
                    for (name, text, mode) in &sections {
                        let p = Path::new(name);
                        let p = if p.is_absolute() { p.to_path_buf() } else { dir.join(p) };
                        write(&p, text, *mode)?;
                    }
                }
            }
        }
        other => bail!("--to {other}: expected toml or legacy"),
    }
    Ok(0)
}

/// A legacy directory's director is the file its `ldirectord[::FILE]` resource names
/// (`ldirectord.cf` by default, as halo's built-in reads it): carried as
/// `[director] file = ...` so that halo checks it when it loads halo.toml.
fn add_director_file(model: &mut Model, dir: &Path) {
    let Some(h) = &model.haresources else { return };
    let name = h.groups.iter().flat_map(|g| g.resources.iter()).find_map(|r| {
        (r.agent == "ldirectord")
            .then(|| r.args.first().cloned().unwrap_or_else(|| crate::director::DEFAULT_CF.to_string()))
    });
    let Some(name) = name else { return };
    let path = dir.join(&name);
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!(
            "note: the ldirectord resource names {}, which is not there: no [director] written",
            path.display()
        );
        return;
    };
    match halo_config::parse_ldirectord_cf(&path, &text) {
        Ok((cf, _)) => model.director = Some(Director { file: Some(PathBuf::from(name)), text, cf }),
        Err(e) => eprintln!("note: {} does not load, no [director] written:\n{e}", path.display()),
    }
}

fn copy_director(d: &Director, from: &Path, to: &Path) -> anyhow::Result<()> {
    let Some(f) = &d.file else { return Ok(()) };
    if f.is_absolute() {
        return Ok(());
    }
    let dst = to.join(f);
    if dst != from.join(f) {
        write(&dst, &d.text, 0o644)?;
    }
    Ok(())
}

fn write(path: &Path, text: &str, mode: u32) -> anyhow::Result<()> {
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("chmod {}", path.display()))?;
    eprintln!("wrote {}", path.display());
    Ok(())
}
