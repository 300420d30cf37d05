//! The M/G/1 queue with job-size predictions: distributions and closed-form mean response times.
//!
//! The model is the one of Mitzenmacher, "Scheduling with predictions and the price of
//! misprediction" (ITCS 2020): a single server, Poisson arrivals at rate λ, independent job
//! sizes with mean 1 (so the load is ρ = λ), and for each job a predicted size y drawn given its
//! true size x from a conditional density g(y | x). The scheduler sees only y (and a job's
//! attained service); the true size is revealed at completion.
//!
//! * [`dist`] holds the service distributions ([`ServiceDist`]: exponential, the heavy-tailed
//!   Weibull F(x) = 1 − exp(−√(2x)), deterministic, log-normal) and the prediction models
//!   ([`PredictionModel`]: perfect, exponential, uniform multiplicative, none), with sampling
//!   for simulations and parsing from the command line.
//! * [`analytic`] computes the mean response time of FCFS, SJF, SPJF, PSPJF, SRPT, SPRPT and
//!   Trail's limited-preemption SPRPT by numerical integration of their closed forms, derived
//!   from the SOAP framework of Scully, Harchol-Balter and Scheller-Wolf (SIGMETRICS 2018). They
//!   are the reference values against which the simulator is checked.
//! * [`sim`] simulates the queue event by event with the core's rank functions and waiting
//!   queue ([`augur_core::policy`], [`augur_core::queue::IndexedHeap`]), and reports the
//!   simulated mean beside the closed form.

pub mod analytic;
pub mod dist;
pub mod sim;

pub use analytic::{AnalyticPolicy, mean_response_time};
pub use dist::{ParseError, PredictionModel, ServiceDist};
pub use sim::{Mg1Config, Mg1Error, Mg1Outcome, Mg1Policy, Mg1Report, report, simulate};
