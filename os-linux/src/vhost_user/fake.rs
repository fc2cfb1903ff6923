//! A scripted vhost-user backend on a thread, for tests: it accepts one connection per
//! script and lets the test answer (or misbehave) request by request.

use super::conn::Connection;
use super::msg::{flags, Header, Payload, Request};
use std::os::fd::{BorrowedFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The listening side; each [`serve`](FakeBackend::serve) takes the next connection.
pub(crate) struct FakeBackend {
    dir: tempfile::TempDir,
    listener: Option<UnixListener>,
    threads: Vec<JoinHandle<()>>,
}

impl FakeBackend {
    pub(crate) fn new() -> FakeBackend {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("vhost.sock")).unwrap();
        FakeBackend {
            dir,
            listener: Some(listener),
            threads: Vec::new(),
        }
    }

    pub(crate) fn path(&self) -> PathBuf {
        self.dir.path().join("vhost.sock")
    }

    /// Runs `script` on the next accepted connection, on its own thread.
    pub(crate) fn serve(&mut self, script: impl FnOnce(Peer) + Send + 'static) {
        let listener = self.listener.as_ref().unwrap().try_clone().unwrap();
        self.threads.push(std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            script(Peer {
                conn: Connection::from_stream(s, Duration::from_secs(5)).unwrap(),
            });
        }));
    }

    /// Stops listening: connects are refused, as when a backend is gone.
    pub(crate) fn close(&mut self) {
        self.listener = None;
        let _ = std::fs::remove_file(self.path());
    }

    /// Listens again at the same path (a restarted backend).
    pub(crate) fn reopen(&mut self) {
        self.listener = Some(UnixListener::bind(self.path()).unwrap());
    }

    /// Waits for every script; a script's panic (a failed check) fails the test here.
    pub(crate) fn join(&mut self) {
        for t in self.threads.drain(..) {
            if let Err(p) = t.join() {
                std::panic::resume_unwind(p);
            }
        }
    }
}

/// One accepted connection, seen from the backend.
pub(crate) struct Peer {
    pub(crate) conn: Connection,
}

/// A request as the backend received it.
pub(crate) struct Received {
    pub(crate) header: Header,
    pub(crate) payload: Payload,
    pub(crate) fds: Vec<OwnedFd>,
}

impl Peer {
    fn deadline() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    /// The next request, which must be `want`, decoded.
    pub(crate) fn expect(&self, want: Request) -> Received {
        let mut fds = Vec::new();
        let header = self.conn.recv_header(Self::deadline(), &mut fds).unwrap();
        assert_eq!(
            Request::from_u32(header.request),
            Some(want),
            "request {}",
            header.request
        );
        assert_eq!(header.flags & flags::VERSION_MASK, flags::VERSION);
        assert_eq!(header.flags & flags::REPLY, 0);
        let mut bytes = vec![0; header.size as usize];
        self.conn
            .read_exact(&mut bytes, Self::deadline(), &mut fds)
            .unwrap();
        let payload = Payload::decode(want.payload_kind(), &bytes).unwrap();
        Received {
            header,
            payload,
            fds,
        }
    }

    /// [`expect`](Self::expect), then an acknowledgement if one was asked for.
    pub(crate) fn expect_acked(&self, want: Request) -> Received {
        let r = self.expect(want);
        if r.header.flags & flags::NEED_REPLY != 0 {
            self.reply(want, &Payload::U64(0));
        }
        r
    }

    /// Whether the frontend closed the connection (nothing more arrives).
    pub(crate) fn expect_eof(&self) {
        let mut fds = Vec::new();
        let e = self
            .conn
            .recv_header(Self::deadline(), &mut fds)
            .unwrap_err();
        assert_eq!(e, super::conn::RecvError::Closed { got: 0 });
    }

    /// A well-formed reply.
    pub(crate) fn reply(&self, request: Request, payload: &Payload) {
        let bytes = payload.encode();
        self.raw(
            Header {
                request: request as u32,
                flags: flags::VERSION | flags::REPLY,
                size: bytes.len() as u32,
            },
            &bytes,
            &[],
        );
    }

    /// Anything at all.
    pub(crate) fn raw(&self, header: Header, bytes: &[u8], fds: &[BorrowedFd<'_>]) {
        self.conn.send(header, bytes, fds).unwrap();
    }

    /// Answers the opening of a session: `GET_FEATURES` with `features`, and if asked,
    /// `GET_PROTOCOL_FEATURES` with `protocol`.
    pub(crate) fn features(&self, features: u64) {
        self.expect(Request::GetFeatures);
        self.reply(Request::GetFeatures, &Payload::U64(features));
    }

    pub(crate) fn protocol(&self, protocol: u64) -> u64 {
        self.expect(Request::GetProtocolFeatures);
        self.reply(Request::GetProtocolFeatures, &Payload::U64(protocol));
        match self.expect(Request::SetProtocolFeatures).payload {
            Payload::U64(v) => v,
            p => panic!("{p:?}"),
        }
    }
}
