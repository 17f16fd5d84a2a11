#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sysinstall_fuzz::data_stage(data));
