//! `halo man` and `halo completions`: the manual pages and the shell completion scripts,
//! generated from the clap definition of the CLI so they never disagree with `--help`.

use anyhow::Context;
use std::io::Write;
use std::path::Path;

/// The manual pages of `cmd`: `halo.8` and one `halo-SUB.8` per subcommand (nested ones
/// too: `halo-config-convert.8`), as (file name, roff text).
pub fn man_pages(mut cmd: clap::Command) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    cmd.build();
    let mut pages = Vec::new();
    add_pages(&cmd, "halo", &mut pages)?;
    Ok(pages)
}

fn add_pages(cmd: &clap::Command, name: &str, pages: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
    let mut text = Vec::new();
    // clap names are `&'static str` (without its `string` feature); a page is made once per
    // process.
    let page = cmd.clone().name(&*name.to_string().leak());
    clap_mangen::Man::new(page)
        .section("8")
        .manual("System Administration")
        .source(concat!("halo ", env!("CARGO_PKG_VERSION")))
        .render(&mut text)
        .with_context(|| format!("rendering {name}.8"))?;
    pages.push((format!("{name}.8"), text));
    // `build()` adds clap's `help` subcommands: no page of their own.
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        add_pages(sub, &format!("{name}-{}", sub.get_name()), pages)?;
    }
    Ok(())
}

/// `halo man`: writes every page into `out`, or prints `halo.8` without it.
pub fn man(cmd: clap::Command, out: Option<&Path>) -> anyhow::Result<i32> {
    let pages = man_pages(cmd)?;
    match out {
        None => {
            std::io::stdout().write_all(&pages[0].1)?;
        }
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            for (name, text) in &pages {
                let path = dir.join(name);
                std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
            }
            eprintln!("halo: {} manual pages written to {}", pages.len(), dir.display());
        }
    }
    Ok(0)
}

/// `halo completions SHELL`: prints the completion script for `shell`.
pub fn completions(mut cmd: clap::Command, shell: clap_complete::Shell) -> anyhow::Result<i32> {
    let mut text = Vec::new();
    clap_complete::generate(shell, &mut cmd, "halo", &mut text);
    std::io::stdout().write_all(&text)?;
    Ok(0)
}
