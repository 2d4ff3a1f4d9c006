//! The AMI client: connect, read the banner, `Login` with `Events: off`, run list actions,
//! `Logoff`. Replies are matched by `ActionID`; anything else that arrives meanwhile (an
//! unsolicited event) is skipped, and counted against the same bound as the list's events.
//! Every read has a deadline, every message is bounded ([`Limits`]), and every failure is a
//! distinct [`AmiError`].

use std::time::Duration;

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use super::frame::{self, Action, FrameError, Limits, Message};
use super::target::Target;

/// The banner's prefix: `Asterisk Call Manager/9.0.0`.
const BANNER: &str = "Asterisk Call Manager/";

/// Deadlines and bounds of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Settings {
    /// For the TCP connection, and for each message awaited (the banner, a reply, the next
    /// event of a list).
    pub timeout: Duration,
    /// Message size bounds.
    pub limits: Limits,
    /// Most messages one action may bring (its events, plus any unsolicited ones).
    pub max_events: usize,
}

impl Default for Settings {
    /// 5 s, [`Limits::default`], 100,000 events.
    fn default() -> Self {
        Settings {
            timeout: Duration::from_secs(5),
            limits: Limits::default(),
            max_events: 100_000,
        }
    }
}

/// Why an AMI session failed. The texts name the address, never the secret.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AmiError {
    /// Nothing listens there.
    #[error("connection refused by {addr} (is the AMI enabled in manager.conf, on that port?)")]
    Refused {
        /// `host:port`.
        addr: String,
    },
    /// The connection could not be made for another reason.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("no answer from Asterisk within {} while {during}", humantime::format_duration(*.after))]
    Timeout {
        /// What the client was waiting for.
        during: &'static str,
        /// The deadline.
        after: Duration,
    },
    /// The first line is not `Asterisk Call Manager/…`.
    #[error("not an Asterisk Manager Interface: the first line was {got:?}")]
    NoBanner {
        /// That line (at most 80 characters), or `""` when the connection closed first.
        got: String,
    },
    /// The login was refused.
    #[error("AMI login refused for user {user:?}: {message}")]
    LoginRefused {
        /// The user.
        user: String,
        /// Asterisk's message (`Authentication failed`).
        message: String,
    },
    /// The user may not run the action (manager.conf `read`/`write`).
    #[error("permission denied for the AMI action {action} (the manager.conf user needs read = system,reporting)")]
    PermissionDenied {
        /// The action.
        action: String,
    },
    /// Asterisk does not know the action: the module that provides it is not loaded.
    #[error("Asterisk does not know the AMI action {action} (its module is not loaded)")]
    UnknownAction {
        /// The action.
        action: String,
    },
    /// Asterisk answered the action with an error.
    #[error("the AMI action {action} failed: {message}")]
    ActionFailed {
        /// The action.
        action: String,
        /// Asterisk's message.
        message: String,
    },
    /// The connection closed before the answer was complete.
    #[error("Asterisk closed the connection while {during}")]
    Dropped {
        /// What the client was waiting for.
        during: &'static str,
    },
    /// A message, a line or a list went past its bound.
    #[error("oversized answer from Asterisk while {during}: {what} over {limit}")]
    TooLarge {
        /// What the client was waiting for.
        during: &'static str,
        /// What was too large.
        what: &'static str,
        /// The bound.
        limit: usize,
    },
    /// Reading or writing failed.
    #[error("AMI connection failed while {during}: {kind}")]
    Io {
        /// What the client was doing.
        during: &'static str,
        /// The error kind.
        kind: std::io::ErrorKind,
    },
}

/// A logged-in session.
#[derive(Debug)]
pub struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
    settings: Settings,
}

impl Client {
    /// Connects, checks the banner and logs in (`Events: off`).
    pub async fn connect(target: &Target, settings: Settings) -> Result<Client, AmiError> {
        let addr = target.authority();
        let stream = match tokio::time::timeout(
            settings.timeout,
            TcpStream::connect((target.host.as_str(), target.port)),
        )
        .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                return Err(AmiError::Refused { addr })
            }
            Ok(Err(source)) => return Err(AmiError::Connect { addr, source }),
            Err(_) => {
                return Err(AmiError::Timeout {
                    during: "connecting",
                    after: settings.timeout,
                })
            }
        };
        let (read, writer) = stream.into_split();
        let mut client = Client {
            reader: BufReader::with_capacity(16 * 1024, read),
            writer,
            settings,
        };
        client.banner().await?;
        client.login(target).await?;
        Ok(client)
    }

    async fn banner(&mut self) -> Result<(), AmiError> {
        const DURING: &str = "reading the banner";
        let mut line = Vec::new();
        let read = frame::read_line(&mut self.reader, &mut line, self.settings.limits.max_line);
        let got = match tokio::time::timeout(self.settings.timeout, read).await {
            Err(_) => {
                return Err(AmiError::Timeout {
                    during: DURING,
                    after: self.settings.timeout,
                })
            }
            Ok(Ok(true)) => String::from_utf8_lossy(&line).into_owned(),
            Ok(Ok(false) | Err(FrameError::Truncated)) => String::new(),
            Ok(Err(e)) => return Err(frame_err(e, DURING)),
        };
        if got.starts_with(BANNER) {
            Ok(())
        } else {
            Err(AmiError::NoBanner {
                got: got.chars().take(80).collect(),
            })
        }
    }

    async fn login(&mut self, target: &Target) -> Result<(), AmiError> {
        let mut action = Action::new("Login");
        action
            .header("Username", &target.username)
            .header("Secret", target.secret.expose())
            .header("Events", "off")
            .header("ActionID", "login-1");
        self.send(&action, "logging in").await?;
        let reply = self.reply("login-1", "logging in").await?;
        if reply.get("Response") == Some("Success") {
            return Ok(());
        }
        Err(AmiError::LoginRefused {
            user: target.username.clone(),
            message: reply.get("Message").unwrap_or("refused").to_owned(),
        })
    }

    /// Runs a list action (`PJSIPShowContacts`, `SIPpeers`, ...) with this `ActionID` and
    /// returns its events, up to (and without) the `…Complete` event that ends the list.
    pub async fn list(&mut self, name: &str, action_id: &str) -> Result<Vec<Message>, AmiError> {
        const DURING: &str = "reading a list";
        let mut action = Action::new(name);
        action.header("ActionID", action_id);
        self.send(&action, DURING).await?;
        let reply = self.reply(action_id, DURING).await?;
        check_response(name, &reply)?;
        let mut events = Vec::new();
        let mut seen = 0_usize;
        loop {
            let m = self.next(DURING).await?;
            seen += 1;
            if seen > self.settings.max_events {
                return Err(AmiError::TooLarge {
                    during: DURING,
                    what: "events",
                    limit: self.settings.max_events,
                });
            }
            if m.get("ActionID") != Some(action_id) {
                continue;
            }
            if m.get("EventList") == Some("Complete") {
                return Ok(events);
            }
            events.push(m);
        }
    }

    /// Sends `Logoff` and waits (briefly) for the goodbye; the connection is closed either way.
    pub async fn logoff(mut self) -> Result<(), AmiError> {
        let mut action = Action::new("Logoff");
        action.header("ActionID", "logoff-1");
        self.send(&action, "logging off").await?;
        match self.reply("logoff-1", "logging off").await {
            Ok(_) | Err(AmiError::Dropped { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn send(&mut self, action: &Action, during: &'static str) -> Result<(), AmiError> {
        let bytes = action.to_bytes();
        let write = self.writer.write_all(&bytes);
        match tokio::time::timeout(self.settings.timeout, write).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(AmiError::Io {
                during,
                kind: e.kind(),
            }),
            Err(_) => Err(AmiError::Timeout {
                during,
                after: self.settings.timeout,
            }),
        }
    }

    /// The next message with this `ActionID` that is a `Response:`, skipping others (bounded).
    async fn reply(&mut self, action_id: &str, during: &'static str) -> Result<Message, AmiError> {
        for _ in 0..=self.settings.max_events {
            let m = self.next(during).await?;
            if m.get("Response").is_some() && m.get("ActionID") == Some(action_id) {
                return Ok(m);
            }
        }
        Err(AmiError::TooLarge {
            during,
            what: "unrelated messages",
            limit: self.settings.max_events,
        })
    }

    async fn next(&mut self, during: &'static str) -> Result<Message, AmiError> {
        let read = frame::read_message(&mut self.reader, &self.settings.limits);
        match tokio::time::timeout(self.settings.timeout, read).await {
            Err(_) => Err(AmiError::Timeout {
                during,
                after: self.settings.timeout,
            }),
            Ok(Ok(Some(m))) => Ok(m),
            Ok(Ok(None)) => Err(AmiError::Dropped { during }),
            Ok(Err(e)) => Err(frame_err(e, during)),
        }
    }
}

/// An error `Response:` as the error it means.
fn check_response(action: &str, reply: &Message) -> Result<(), AmiError> {
    if reply.get("Response") == Some("Success") {
        return Ok(());
    }
    let message = reply.get("Message").unwrap_or("").to_owned();
    let action = action.to_owned();
    Err(if message.eq_ignore_ascii_case("Permission denied") {
        AmiError::PermissionDenied { action }
    } else if message.starts_with("Invalid/unknown command") {
        AmiError::UnknownAction { action }
    } else {
        AmiError::ActionFailed { action, message }
    })
}

fn frame_err(e: FrameError, during: &'static str) -> AmiError {
    match e {
        FrameError::TooLarge { what, limit } => AmiError::TooLarge {
            during,
            what,
            limit,
        },
        FrameError::Truncated => AmiError::Dropped { during },
        FrameError::Io(kind) => AmiError::Io { during, kind },
    }
}
