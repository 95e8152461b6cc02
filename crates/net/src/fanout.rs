//! The one fan-out driver. It calls peers as a [`Pacing`] says and hands
//! each answer to a [`Tally`] (floe-consensus's pure quorum procedures),
//! until the tally is done, its deadline passes, or no peer is left to ask.
//! Every "ask the committee until enough shards answered" of the client and
//! the node runs on it; the procedures themselves hold no I/O.

use std::collections::HashMap;
use std::future::Future;
use std::time::Instant;

use floe_consensus::quorum::{Pacing, Step, Tally};
use tokio::task::{Id, JoinSet};

/// How a [`FanOut::run`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// The tally had what it needed.
    Done,
    /// Every peer asked has answered and none is left to ask.
    Exhausted,
    /// The tally's deadline passed with calls unanswered.
    Deadline,
}

/// Calls to peers named by `K`, each answering an `A`.
#[derive(Debug)]
pub struct FanOut<K, A> {
    targets: std::vec::IntoIter<K>,
    pacing: Pacing,
    calls: JoinSet<A>,
    /// Each unanswered call's peer, and when it was asked.
    asked: HashMap<Id, (K, Instant)>,
}

impl<K: Clone, A: Send + 'static> FanOut<K, A> {
    /// Calls to `targets`, in order, paced by `pacing`.
    pub fn new(targets: impl IntoIterator<Item = K>, pacing: Pacing) -> Self {
        Self {
            targets: targets.into_iter().collect::<Vec<_>>().into_iter(),
            pacing,
            calls: JoinSet::new(),
            asked: HashMap::new(),
        }
    }

    /// Calls peers with `call` and folds their answers into `tally` until it
    /// is done, its deadline passes, or every peer has answered. Calls still
    /// running stay here: [`FanOut::detach`] lets them finish,
    /// [`FanOut::finish_by`] gives them until a deadline, dropping the
    /// fan-out cancels them.
    pub async fn run<T, F, Fut>(&mut self, tally: &mut T, mut call: F) -> Ended
    where
        T: Tally<K, A>,
        F: FnMut(K) -> Fut,
        Fut: Future<Output = A> + Send + 'static,
    {
        let mut deadline: Option<Instant> = None;
        // The last answer or hedge: a stall is measured from it.
        let mut last = Instant::now();
        loop {
            while self.calls.len() < self.pacing.window && tally.wanted(self.calls.len()) > 0 {
                if !self.launch(&mut call) {
                    break;
                }
            }
            if self.calls.is_empty() {
                return Ended::Exhausted;
            }
            let hedge = self.pacing.hedge.map(|after| last + after);
            let wake = deadline.into_iter().chain(hedge).min();
            let joined = match wake {
                None => self.calls.join_next_with_id().await,
                Some(at) => {
                    let next = self.calls.join_next_with_id();
                    match tokio::time::timeout_at(at.into(), next).await {
                        Ok(joined) => joined,
                        Err(_) => {
                            let now = Instant::now();
                            if deadline.is_some_and(|d| d <= now) {
                                return Ended::Deadline;
                            }
                            // A stall: one more peer, beyond the window.
                            self.launch(&mut call);
                            last = now;
                            continue;
                        }
                    }
                }
            };
            let Some(joined) = joined else { continue };
            let now = Instant::now();
            last = now;
            match joined {
                Ok((id, answer)) => {
                    let Some((from, _)) = self.asked.remove(&id) else {
                        continue;
                    };
                    match tally.answer(from, answer, now) {
                        Step::Done => return Ended::Done,
                        Step::Continue { deadline: next } => deadline = next,
                    }
                }
                // A call that panicked gave no answer.
                Err(error) => {
                    self.asked.remove(&error.id());
                }
            }
        }
    }

    fn launch<F, Fut>(&mut self, call: &mut F) -> bool
    where
        F: FnMut(K) -> Fut,
        Fut: Future<Output = A> + Send + 'static,
    {
        let Some(target) = self.targets.next() else {
            return false;
        };
        let handle = self.calls.spawn(call(target.clone()));
        self.asked.insert(handle.id(), (target, Instant::now()));
        true
    }

    /// The peers asked whose answers have not come, with when each was asked.
    pub fn waiting(&self) -> impl Iterator<Item = (&K, Instant)> + '_ {
        self.asked.values().map(|(peer, asked)| (peer, *asked))
    }

    /// Lets the calls still running finish in the background.
    pub fn detach(mut self) {
        self.calls.detach_all();
    }

    /// Gives the calls still running until `deadline`, then cancels the rest.
    pub async fn finish_by(&mut self, deadline: Instant) {
        while let Ok(Some(_)) =
            tokio::time::timeout_at(deadline.into(), self.calls.join_next()).await
        {}
        self.calls.abort_all();
        self.asked.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use floe_consensus::quorum::Discard;
    use std::time::Duration;

    /// Done after `enough` answers; records who answered.
    struct Count {
        enough: usize,
        from: Vec<u32>,
    }

    impl Tally<u32, u32> for Count {
        fn answer(&mut self, from: u32, answer: u32, _now: Instant) -> Step {
            assert_eq!(
                from, answer,
                "an answer is handed over with the peer it came from"
            );
            self.from.push(from);
            if self.from.len() >= self.enough {
                Step::Done
            } else {
                Step::CONTINUE
            }
        }
    }

    async fn answer_after(peer: u32, millis: u64) -> u32 {
        tokio::time::sleep(Duration::from_millis(millis)).await;
        peer
    }

    #[tokio::test]
    async fn done_leaves_the_slow_calls_running_and_the_window_holds() {
        let mut fanout = FanOut::new(0..6u32, Pacing::window(2, None));
        let mut tally = Count {
            enough: 3,
            from: Vec::new(),
        };
        let ended = fanout
            .run(&mut tally, |peer| answer_after(peer, 10 * u64::from(peer)))
            .await;
        assert_eq!(ended, Ended::Done);
        // Two at a time, in order: 0 and 1, then 2 in 1's place.
        assert_eq!(tally.from, vec![0, 1, 2]);
        let waiting: Vec<u32> = fanout.waiting().map(|(p, _)| *p).collect();
        assert_eq!(waiting, vec![3], "only the window was in flight");
    }

    #[tokio::test]
    async fn a_stall_brings_in_one_more_peer_beyond_the_window() {
        let mut fanout = FanOut::new(
            [0u32, 1],
            Pacing::window(1, Some(Duration::from_millis(50))),
        );
        let mut tally = Count {
            enough: 1,
            from: Vec::new(),
        };
        // Peer 0 stalls for seconds; peer 1, asked after the hedge, answers.
        let started = Instant::now();
        let ended = fanout
            .run(&mut tally, |peer| {
                answer_after(peer, if peer == 0 { 5_000 } else { 0 })
            })
            .await;
        assert_eq!((ended, tally.from), (Ended::Done, vec![1]));
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    /// Sets a deadline at its first answer.
    struct Grace(Option<Instant>, usize);

    impl Tally<u32, u32> for Grace {
        fn answer(&mut self, _: u32, _: u32, now: Instant) -> Step {
            self.1 += 1;
            let deadline = *self.0.get_or_insert(now + Duration::from_millis(50));
            Step::Continue {
                deadline: Some(deadline),
            }
        }
    }

    #[tokio::test]
    async fn a_deadline_ends_the_wait_and_exhaustion_ends_the_run() {
        let mut fanout = FanOut::new(0..3u32, Pacing::ALL);
        let mut tally = Grace(None, 0);
        let ended = fanout
            .run(&mut tally, |peer| {
                answer_after(peer, if peer == 2 { 5_000 } else { 0 })
            })
            .await;
        assert_eq!((ended, tally.1), (Ended::Deadline, 2));
        let mut all = FanOut::new(0..3u32, Pacing::ALL);
        assert_eq!(
            all.run(&mut Discard, |peer| answer_after(peer, 1)).await,
            Ended::Exhausted
        );
        assert_eq!(all.waiting().count(), 0);
    }
}
