//! TF Serving's config files in protobuf text format, through the readers
//! the server uses: `--model_config_file`, `--batching_parameters_file`
//! (both of its forms) and `--monitoring_config_file`. Any text gives a
//! message or an error whose position lies inside the text.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vitrine_wire::textproto::{
    TextFormatError, batching_parameters, model_server_config, monitoring_config,
};

fn check(text: &str, result: Result<impl Sized, TextFormatError>) {
    if let Err(e) = result {
        assert!(e.offset <= text.len(), "{e:?}");
        assert!(text.is_char_boundary(e.offset), "{e:?}");
        assert!(
            e.line >= 1 && e.line <= text.matches('\n').count() + 1,
            "{e:?}"
        );
        assert!(e.column >= 1, "{e:?}");
        let _ = e.to_string();
    }
}

fuzz_target!(|data: &[u8]| {
    // The host reads config files with read_to_string: UTF-8 only.
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    check(text, model_server_config(text));
    check(text, batching_parameters(text));
    check(text, monitoring_config(text));
});
