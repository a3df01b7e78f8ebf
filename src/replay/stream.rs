//! When to send each recorded server event of a streaming exchange (gRPC message, WebSocket
//! frame, response head, trailers): the pure plan, and the live [`Progress`] it waits on.
//!
//! Every server event is tied to the latest client event recorded before it — a client
//! message, or the client's half-close — and goes out that long after the live client reaches
//! the same point. Server events before any client event are unprompted and go out at their
//! recorded offsets from the stream's start. Live client messages are matched to recorded
//! ones by bytes, else by position, so a client that sends the same messages in a different
//! order still gets each answer after the message it answers.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::watch;
use tokio::time::Instant;

/// What a server event waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// Nothing: the stream's start.
    Start,
    /// The recorded client message with this index (among client messages).
    Client(usize),
    /// The client's half-close (end of its request stream).
    HalfClose,
}

/// One server event's place in the plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Step {
    pub trigger: Trigger,
    /// How long after the trigger it went out in the recording.
    pub delay: Duration,
}

/// Plans the server event recorded at `offset_ns`, given the recorded client message offsets
/// (in order) and the recorded half-close offset.
pub fn plan(client_offsets: &[u64], half_close: Option<u64>, offset_ns: u64) -> Step {
    let mut best: (Trigger, u64) = (Trigger::Start, 0);
    for (i, &o) in client_offsets.iter().enumerate() {
        if o <= offset_ns && o >= best.1 {
            best = (Trigger::Client(i), o);
        }
    }
    if let Some(h) = half_close {
        if h <= offset_ns && h >= best.1 {
            best = (Trigger::HalfClose, h);
        }
    }
    Step {
        trigger: best.0,
        delay: Duration::from_nanos(offset_ns - best.1),
    }
}

/// Matches a live client message to a recorded one: the first unconsumed with the same bytes,
/// else the first unconsumed of the same kind (`same_kind(recorded, live)`). Marks it consumed.
pub fn match_client(
    recorded: &[Bytes],
    consumed: &mut [bool],
    live: &[u8],
    same_kind: impl Fn(&[u8], &[u8]) -> bool,
) -> Option<usize> {
    let exact = recorded
        .iter()
        .zip(consumed.iter())
        .position(|(r, c)| !c && r[..] == *live);
    let pick = exact.or_else(|| {
        recorded
            .iter()
            .zip(consumed.iter())
            .position(|(r, c)| !c && same_kind(r, live))
    })?;
    consumed[pick] = true;
    Some(pick)
}

#[derive(Clone, Debug)]
struct State {
    start: Instant,
    matched: Vec<Option<Instant>>,
    half_closed: Option<Instant>,
}

/// The live client's progress through a stream, shared by its reader and the player.
#[derive(Clone)]
pub struct Progress {
    tx: std::sync::Arc<watch::Sender<State>>,
    recorded: std::sync::Arc<Vec<Bytes>>,
    consumed: std::sync::Arc<std::sync::Mutex<Vec<bool>>>,
}

impl Progress {
    /// Progress for a stream whose recorded client messages are `recorded`, started `start`.
    pub fn new(recorded: std::sync::Arc<Vec<Bytes>>, start: Instant) -> Progress {
        let n = recorded.len();
        let (tx, _) = watch::channel(State {
            start,
            matched: vec![None; n],
            half_closed: None,
        });
        Progress {
            tx: std::sync::Arc::new(tx),
            recorded,
            consumed: std::sync::Arc::new(std::sync::Mutex::new(vec![false; n])),
        }
    }

    /// A live client message arrived; returns the recorded index it stands for.
    pub fn client_message(
        &self,
        data: &[u8],
        same_kind: impl Fn(&[u8], &[u8]) -> bool,
    ) -> Option<usize> {
        let idx = {
            let mut consumed = self.consumed.lock().ok()?;
            match_client(&self.recorded, &mut consumed, data, same_kind)?
        };
        let now = Instant::now();
        self.tx.send_modify(|s| s.matched[idx] = Some(now));
        Some(idx)
    }

    /// The live client half-closed (or went away).
    pub fn half_close(&self) {
        let now = Instant::now();
        self.tx.send_modify(|s| {
            s.half_closed.get_or_insert(now);
        });
    }

    /// True when `trigger` has already happened.
    pub fn fired(&self, trigger: Trigger) -> bool {
        let s = self.tx.borrow();
        match trigger {
            Trigger::Start => true,
            Trigger::Client(i) => {
                s.matched.get(i).copied().flatten().is_some() || s.half_closed.is_some()
            }
            Trigger::HalfClose => s.half_closed.is_some(),
        }
    }

    /// Waits for `trigger` and returns when it happened. A half-close also releases every
    /// client-message trigger: a client that sends fewer messages than recorded still gets the
    /// rest of the answer.
    pub async fn wait(&self, trigger: Trigger) -> Instant {
        let fired = |s: &State| match trigger {
            Trigger::Start => Some(s.start),
            Trigger::Client(i) => s.matched.get(i).copied().flatten().or(s.half_closed),
            Trigger::HalfClose => s.half_closed,
        };
        let mut rx = self.tx.subscribe();
        let result = match rx.wait_for(|s| fired(s).is_some()).await {
            Ok(s) => fired(&s),
            Err(_) => None,
        };
        result.unwrap_or_else(Instant::now)
    }
}

/// Waits until `step` is due: its trigger, then its recorded delay (unless `recorded_latency`
/// is off), never before `not_before` so events keep their order.
pub async fn due(
    progress: &Progress,
    step: Step,
    recorded_latency: bool,
    not_before: Instant,
) -> Instant {
    let at = progress.wait(step.trigger).await;
    let target = if recorded_latency {
        at + step.delay
    } else {
        at
    }
    .max(not_before);
    if target > Instant::now() {
        tokio::time::sleep_until(target).await;
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_ties_server_events_to_the_latest_client_event() {
        let ms = |n: u64| n * 1_000_000;
        // Unprompted before any client message.
        assert_eq!(
            plan(&[ms(10)], Some(ms(20)), ms(5)),
            Step {
                trigger: Trigger::Start,
                delay: Duration::from_millis(5)
            }
        );
        assert_eq!(
            plan(&[ms(10), ms(30)], None, ms(12)).trigger,
            Trigger::Client(0)
        );
        assert_eq!(
            plan(&[ms(10), ms(30)], None, ms(31)),
            Step {
                trigger: Trigger::Client(1),
                delay: Duration::from_millis(1)
            }
        );
        // Client streaming: the answer follows the half-close.
        assert_eq!(
            plan(&[ms(1), ms(2)], Some(ms(3)), ms(4)),
            Step {
                trigger: Trigger::HalfClose,
                delay: Duration::from_millis(1)
            }
        );
    }

    #[test]
    fn client_messages_match_by_bytes_then_position() {
        let rec = vec![
            Bytes::from_static(b"a"),
            Bytes::from_static(b"b"),
            Bytes::from_static(b"c"),
        ];
        let mut used = vec![false; 3];
        assert_eq!(match_client(&rec, &mut used, b"b", |_, _| true), Some(1));
        assert_eq!(match_client(&rec, &mut used, b"zzz", |_, _| true), Some(0));
        assert_eq!(
            match_client(&rec, &mut used, b"b", |_, _| true),
            Some(2),
            "b used up: next by position"
        );
        assert_eq!(match_client(&rec, &mut used, b"a", |_, _| true), None);
    }

    #[tokio::test(start_paused = true)]
    async fn due_waits_for_the_trigger_then_the_recorded_delay() {
        let start = Instant::now();
        let p = Progress::new(std::sync::Arc::new(vec![Bytes::from_static(b"q")]), start);
        let step = Step {
            trigger: Trigger::Client(0),
            delay: Duration::from_millis(40),
        };
        let p2 = p.clone();
        let player = tokio::spawn(async move { due(&p2, step, true, start).await });
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!player.is_finished());
        let sent_at = Instant::now();
        p.client_message(b"q", |_, _| true);
        let t = player.await.unwrap();
        assert_eq!(t.duration_since(sent_at), Duration::from_millis(40));
    }
}
