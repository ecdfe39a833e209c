//! VXLAN encapsulation and VTEP/remote-MAC tables for vswitch: pure logic over
//! frame bytes, no I/O. Empty until the overlay issue lands.
