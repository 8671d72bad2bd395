//! Text handling for occupation coding: validation of survey answers with
//! the coding service's rules, then feature extraction.
//!
//! Data flows one way: a [`Record`] is checked by [`validate()`], split into
//! words by [`tokenize`], stemmed and hashed by [`Featurizer`] into a
//! [`SparseVector`] that the model scores.

mod features;
mod sparse;
pub mod tokenize;
mod validate;

pub use features::{FeatureConfig, Featurizer, Scratch};
pub use sparse::SparseVector;
pub use validate::{
    Field, LengthLimit, MAX_BULK_TEXT_LENGTH, MAX_SYNCHRONOUS_TEXT_LENGTH, MIN_TEXT_LENGTH, Record, RecordError, validate,
};
