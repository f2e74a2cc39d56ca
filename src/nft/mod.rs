//! ir::Ruleset → one nftables netlink transaction (libnftnl + libmnl).
