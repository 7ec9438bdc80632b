//! Whole configurations in the style of OpenSMTPD's documentation and of
//! common deployments; each must load.
