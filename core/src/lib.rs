//! augur-core
#![no_std]
