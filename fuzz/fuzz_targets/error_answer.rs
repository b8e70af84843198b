#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let [a, b, body @ ..] = data {
        tokenwarden::sources::fuzzing::error_answer(u16::from_le_bytes([*a, *b]), body);
    }
});
