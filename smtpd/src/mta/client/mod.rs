//! The client side of one SMTP or LMTP connection to a next hop.
