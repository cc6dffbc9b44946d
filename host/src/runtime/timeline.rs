//! When each step of one inference request happened on its instance, turned
//! into the phases of `vitrine_request_phase_seconds`: where a request's
//! time goes between the front end and the engine.
//!
//! The pool stamps the request's arrival, the instance it got and the
//! guest's start and end; `wasi:nn` stamps the engine call and the engine
//! stamps its run. Every stamp is on the host's clock, none in the guest.

use std::time::{Duration, Instant};

use crate::engines::RunSpan;

/// The engine call of one request, as `wasi:nn`'s `compute` saw it.
#[derive(Debug, Clone, Copy)]
pub struct EngineCall {
    /// The guest called `compute`: its tensor is ready.
    pub called: Instant,
    pub run: RunSpan,
    /// `compute` returned to the guest.
    pub returned: Instant,
}

/// The stamps of one request, in the order they happen.
#[derive(Debug, Clone, Copy)]
pub struct Timeline {
    /// The pool was asked to answer.
    pub arrived: Instant,
    /// An instance was free (or instantiated) for it.
    pub instance: Instant,
    /// The guest's task began to run it.
    pub guest_started: Instant,
    /// The host path's engine call; `None` on the guest path, or when the
    /// guest refused the request before inferring.
    pub engine: Option<EngineCall>,
    /// The guest returned, its reply written.
    pub guest_ended: Instant,
}

/// A phase's name, as the metric's `phase` label gives it.
pub type Phase = &'static str;

impl Timeline {
    /// The phases of this request, each the time between two stamps; they
    /// add up to the time from `arrived` to `guest_ended`.
    pub fn phases(&self) -> Vec<(Phase, Duration)> {
        let between = |a: Instant, b: Instant| b.saturating_duration_since(a);
        let mut phases = vec![
            ("queue", between(self.arrived, self.instance)),
            ("start", between(self.instance, self.guest_started)),
        ];
        match self.engine {
            Some(e) => phases.extend([
                ("preprocess", between(self.guest_started, e.called)),
                ("engine_queue", between(e.called, e.run.started)),
                ("engine_run", between(e.run.started, e.run.ended)),
                ("engine_return", between(e.run.ended, e.returned)),
                ("postprocess", between(e.returned, self.guest_ended)),
            ]),
            None => phases.push(("guest", between(self.guest_started, self.guest_ended))),
        }
        phases
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_paths_phases_are_the_gaps_between_its_stamps_and_add_up() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let timeline = Timeline {
            arrived: at(0),
            instance: at(1),
            guest_started: at(3),
            engine: Some(EngineCall {
                called: at(10),
                run: RunSpan {
                    started: at(14),
                    ended: at(150),
                },
                returned: at(151),
            }),
            guest_ended: at(153),
        };
        let phases = timeline.phases();
        let ms: Vec<(Phase, u64)> = phases
            .iter()
            .map(|(p, d)| (*p, d.as_millis() as u64))
            .collect();
        assert_eq!(
            ms,
            [
                ("queue", 1),
                ("start", 2),
                ("preprocess", 7),
                ("engine_queue", 4),
                ("engine_run", 136),
                ("engine_return", 1),
                ("postprocess", 2),
            ]
        );
        let total: Duration = phases.iter().map(|(_, d)| *d).sum();
        assert_eq!(total, at(153) - at(0));
    }

    #[test]
    fn the_guest_paths_run_is_one_phase() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let timeline = Timeline {
            arrived: at(0),
            instance: at(0),
            guest_started: at(1),
            engine: None,
            guest_ended: at(900),
        };
        let names: Vec<Phase> = timeline.phases().iter().map(|(p, _)| *p).collect();
        assert_eq!(names, ["queue", "start", "guest"]);
        assert_eq!(timeline.phases()[2].1, Duration::from_millis(899));
    }
}
