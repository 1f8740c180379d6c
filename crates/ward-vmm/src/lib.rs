//! ward-vmm
