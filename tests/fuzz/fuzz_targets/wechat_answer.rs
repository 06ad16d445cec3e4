//! Any status, content type and body as WeChat's answer: classified without
//! panicking; an error's text stays printable and bounded.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wechat_api::{classify_answer, Api};

fuzz_target!(|input: (u16, Option<String>, Vec<u8>)| {
    let (status, content_type, body) = input;
    if let Err(e) = classify_answer(
        Api::SnsAccessToken,
        "api.weixin.qq.com",
        status,
        content_type.as_deref(),
        &body,
    ) {
        let shown = e.to_string();
        assert!(shown.len() < 4096, "an error of {} bytes", shown.len());
    }
});
