#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sysinstall_fuzz::bmap(data));
