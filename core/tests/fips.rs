//! The token tests of `it` again, against aws-lc's FIPS module (`make fips`): only the modules
//! a FIPS build changes, so that run compiles little. Built only with the `fips` feature.

#[path = "it/gitlab_tokens.rs"]
mod gitlab_tokens;
#[path = "it/support.rs"]
mod support;
#[path = "it/token_properties.rs"]
mod token_properties;
#[path = "it/tokens.rs"]
mod tokens;
