//! Profiles: one per server the user logged in to, optionally named, with
//! the store that holds its tokens, and which one is the default. They live
//! in `profiles.json` beside the credentials file; it holds no secret, but
//! is written owner-only and atomically like the credentials. Also the
//! `tessera profiles` command, which lists them.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::SystemTime;

use anyhow::{Context, bail};
use clap::Args;
use serde::{Deserialize, Serialize};
use tessera_client::ServerUrl;

use super::storage::{self, StoreKind};
use super::{Target, on_store};

/// Arguments of `tessera profiles`.
#[derive(Debug, Args)]
pub(crate) struct ProfilesArgs {}

/// One server's profile.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Profile {
    /// The name given with `login --profile`, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) name: Option<String>,
    /// Where the tokens are.
    pub(super) store: StoreKind,
}

/// The contents of `profiles.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(super) struct Profiles {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    default: Option<ServerUrl>,
    #[serde(default)]
    servers: BTreeMap<ServerUrl, Profile>,
}

impl Profiles {
    /// The profiles file, or none if it does not exist yet.
    pub(super) async fn load() -> anyhow::Result<Self> {
        let path = path()?;
        tokio::task::spawn_blocking(move || read(&path)).await?
    }

    /// Writes the profiles back.
    pub(super) async fn save(self) -> anyhow::Result<()> {
        let path = path()?;
        tokio::task::spawn_blocking(move || write(&path, &self)).await?
    }

    /// The profile of `server`, if there is one.
    pub(super) fn get(&self, server: &ServerUrl) -> Option<Profile> {
        self.servers.get(server).cloned()
    }

    /// The profile named `name`, or whose server URL is `name`.
    pub(super) fn find(&self, name: &str) -> Option<Target> {
        let by_name = self
            .servers
            .iter()
            .find(|(_, profile)| profile.name.as_deref() == Some(name));
        let by_url = || {
            let server = ServerUrl::parse(name).ok()?;
            self.servers.get_key_value(&server)
        };
        by_name.or_else(by_url).map(|(server, profile)| Target {
            server: server.clone(),
            profile: Some(profile.clone()),
        })
    }

    /// The default profile, else the only one; an error if there are
    /// several and none is the default.
    pub(super) fn default_target(&self) -> anyhow::Result<Option<Target>> {
        let target = |server: &ServerUrl| Target {
            server: server.clone(),
            profile: self.get(server),
        };
        if let Some(default) = self
            .default
            .as_ref()
            .filter(|d| self.servers.contains_key(d))
        {
            return Ok(Some(target(default)));
        }
        let servers: Vec<&ServerUrl> = self.servers.keys().collect();
        match servers.as_slice() {
            [] => Ok(None),
            [only] => Ok(Some(target(only))),
            several => {
                let names: Vec<&str> = several.iter().map(|s| s.as_str()).collect();
                bail!(
                    "logged in to several servers and none is the default; \
                     pass --profile or --server with one of: {}",
                    names.join(", ")
                )
            }
        }
    }

    /// Records a login: `server`'s tokens are in `store`, it is the default
    /// from now on, and is called `name` if one was given (else keeps its
    /// old name). A name moves from any other profile that had it.
    pub(super) fn record_login(
        &mut self,
        server: &ServerUrl,
        name: Option<&str>,
        store: StoreKind,
    ) {
        if let Some(name) = name {
            for profile in self.servers.values_mut() {
                if profile.name.as_deref() == Some(name) {
                    profile.name = None;
                }
            }
        }
        let kept = self.servers.get(server).and_then(|p| p.name.clone());
        let name = name.map(str::to_owned).or(kept);
        self.servers.insert(server.clone(), Profile { name, store });
        self.default = Some(server.clone());
    }

    /// Forgets `server`'s profile.
    pub(super) fn remove(&mut self, server: &ServerUrl) {
        self.servers.remove(server);
        if self.default.as_ref() == Some(server) {
            self.default = None;
        }
    }
}

pub(crate) async fn run(_args: ProfilesArgs) -> anyhow::Result<ExitCode> {
    let profiles = Profiles::load().await?;
    if profiles.servers.is_empty() {
        eprintln!("no profiles: run `tessera login --server URL [--profile NAME]`");
        return Ok(ExitCode::from(super::EXIT_LOGGED_OUT));
    }

    for (server, profile) in &profiles.servers {
        let target = Target {
            server: server.clone(),
            profile: Some(profile.clone()),
        };
        let marker = if profiles.default.as_ref() == Some(server) {
            "*"
        } else {
            " "
        };
        let name = profile.name.as_deref().unwrap_or("-");
        let store = match profile.store {
            StoreKind::Keyring => "keyring",
            StoreKind::File => "file",
        };
        let user = match storage::open(&target) {
            Ok(store) => {
                let key = server.clone();
                match on_store(&store, move |s| s.load(&key)).await {
                    Ok(Some(tokens)) if tokens.time_left(SystemTime::now()).is_some() => {
                        tokens.username
                    }
                    Ok(Some(tokens)) => format!("{} (renews on next use)", tokens.username),
                    Ok(None) => "(logged out)".to_owned(),
                    Err(error) => format!("(cannot read: {error})"),
                }
            }
            Err(_) => "(keyring unavailable)".to_owned(),
        };
        say!("{marker} {name:<12} {server}  {user}  [{store}]");
    }
    Ok(ExitCode::SUCCESS)
}

/// `profiles.json` beside the credentials file.
fn path() -> anyhow::Result<PathBuf> {
    let file = storage::file_store()?;
    Ok(file.path().with_file_name("profiles.json"))
}

fn read(path: &Path) -> anyhow::Result<Profiles> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not a valid profiles file", path.display())),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Profiles::default()),
        Err(error) => Err(error).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// Replaces the file atomically: a private temporary file in the same
/// folder, flushed, then renamed over the old one.
fn write(path: &Path, profiles: &Profiles) -> anyhow::Result<()> {
    let folder = path.parent().context("the profiles file has no folder")?;
    create_private_folder(folder).with_context(|| format!("cannot create {}", folder.display()))?;
    let json = serde_json::to_vec_pretty(profiles)?;
    let mut temporary = tempfile::Builder::new()
        .prefix(".profiles-")
        .suffix(".tmp")
        .tempfile_in(folder)
        .with_context(|| format!("cannot write in {}", folder.display()))?;
    temporary
        .write_all(&json)
        .and_then(|()| temporary.as_file().sync_all())
        .with_context(|| format!("cannot write {}", path.display()))?;
    temporary
        .persist(path)
        .with_context(|| format!("cannot replace {}", path.display()))?;
    Ok(())
}

#[cfg(unix)]
fn create_private_folder(folder: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;

    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(folder)
}

#[cfg(not(unix))]
fn create_private_folder(folder: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> ServerUrl {
        ServerUrl::parse(text).unwrap()
    }

    #[test]
    fn profiles_are_found_by_name_or_url_and_the_last_login_is_default() {
        let mut profiles = Profiles::default();
        profiles.record_login(&url("http://127.0.0.1:1"), Some("work"), StoreKind::File);
        profiles.record_login(&url("http://127.0.0.1:2"), None, StoreKind::Keyring);

        let work = profiles.find("work").unwrap();
        let by_url = profiles.find("http://127.0.0.1:2/").unwrap();
        let default = profiles.default_target().unwrap().unwrap();

        assert_eq!(work.server, url("http://127.0.0.1:1"));
        assert_eq!(by_url.server, url("http://127.0.0.1:2"));
        assert_eq!(default.server, url("http://127.0.0.1:2"));
        assert!(profiles.find("home").is_none());
    }

    #[test]
    fn a_name_moves_to_the_profile_that_takes_it_last() {
        let mut profiles = Profiles::default();
        profiles.record_login(&url("http://127.0.0.1:1"), Some("work"), StoreKind::File);
        profiles.record_login(&url("http://127.0.0.1:2"), Some("work"), StoreKind::File);
        profiles.record_login(&url("http://127.0.0.1:2"), None, StoreKind::File);

        assert_eq!(
            profiles.find("work").unwrap().server,
            url("http://127.0.0.1:2")
        );
    }

    #[test]
    fn several_profiles_without_a_default_need_a_choice() {
        let mut profiles = Profiles::default();
        profiles.record_login(&url("http://127.0.0.1:1"), None, StoreKind::File);
        profiles.record_login(&url("http://127.0.0.1:2"), None, StoreKind::File);
        profiles.remove(&url("http://127.0.0.1:2"));
        profiles.record_login(&url("http://127.0.0.1:3"), None, StoreKind::File);
        profiles.default = None;

        assert!(profiles.default_target().is_err());
    }
}
