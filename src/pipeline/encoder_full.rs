//! Telling "the encoder is full" from "the encoder is broken" in a session's first-start error.
//!
//! NVIDIA caps NVENC sessions per system on GeForce cards (3, 5 or 8 by driver). One more
//! session fails to open: `NvEncOpenEncodeSessionEx` returns `NV_ENC_ERR_OUT_OF_MEMORY` (10) on
//! current drivers and `NV_ENC_ERR_INCOMPATIBLE_CLIENT_KEY` (21) on older ones. GStreamer posts
//! this as an element error whose debug text names the failed step:
//!
//! - `nvh264enc` of GStreamer ≤ 1.22 (`gstnvbaseenc.c`): the session opens when the element
//!   goes to READY; failing, `GstVideoEncoder` posts `LIBRARY/INIT` with debug "Failed to open
//!   encoder"; a reopen at caps time posts "Failed to open encode session".
//! - `nvcudah264enc` (1.22) and `nvh264enc` of later releases (`gstnvencoder.cpp`): the session
//!   opens at caps time; failing, `STREAM/ENCODE` with debug "Failed to open session" (the log
//!   line beside it carries "status: NV_ENC_ERR_OUT_OF_MEMORY (10)").
//! - FFmpeg's `h264_nvenc`, where a text from it reaches xg2g: "OpenEncodeSessionEx failed: out
//!   of memory (10)" or "… incompatible client key (21)".
//!
//! A failure to *open* an encoder at start is treated as "full" for every encoder: the only
//! other causes (no device, a driver being updated) also clear up by waiting, while a broken
//! pipeline fails later, at negotiation or while encoding, with other texts. The session calls
//! this only before its first bytes, so a mid-stream error is never taken for "full".

/// Texts that mean the encoder could not open a session. Matched case-insensitively against
/// the error's message and debug text.
const OPEN_FAILURES: &[&str] = &[
    "nv_enc_err_out_of_memory",
    "nv_enc_err_incompatible_client_key",
    "incompatible client key",
    "openencodesessionex failed",
    "failed to open encode session",
    "failed to open session",
    "failed to open encoder",
];

/// Whether a session's first-start error says that the encoder has no free session.
pub fn is_encoder_full(error: &str) -> bool {
    let error = error.to_ascii_lowercase();
    OPEN_FAILURES.iter().any(|text| error.contains(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Errors as the session formats them (`{element path}: {message} ({debug})`), with the
    /// message and debug texts GStreamer and FFmpeg produce (sources named in the module doc).
    const FULL: &[&str] = &[
        "/GstPipeline:pipeline3/GstBin:bin6/GstNvH264Enc:nvh264enc0: Could not initialize supporting library. \
         (../gst-libs/gst/video/gstvideoencoder.c(1755): gst_video_encoder_change_state (): \
         /GstPipeline:pipeline3/GstBin:bin6/GstNvH264Enc:nvh264enc0:\nFailed to open encoder)",
        "/GstPipeline:pipeline0/GstBin:bin1/GstNvH264Enc:nvh264enc0: Could not initialize supporting library. \
         (../sys/nvcodec/gstnvbaseenc.c(1629): gst_nv_base_enc_set_format (): \
         /GstPipeline:pipeline0/GstBin:bin1/GstNvH264Enc:nvh264enc0:\nFailed to open encode session)",
        "/GstPipeline:pipeline1/GstBin:bin2/GstNvCudaH264Enc:nvcudah264enc0: Could not encode stream. \
         (../sys/nvcodec/gstnvencoder.cpp(1012): gst_nv_encoder_init_session (): \
         /GstPipeline:pipeline1/GstBin:bin2/GstNvCudaH264Enc:nvcudah264enc0:\nFailed to open session)",
        "gstnvencoder.cpp:890:gst_nv_encoder_open_encode_session:<nvh264enc0> Failed to open session, \
         status: NV_ENC_ERR_OUT_OF_MEMORY (10)",
        "Failed to open session, status: NV_ENC_ERR_INCOMPATIBLE_CLIENT_KEY (21)",
        "[h264_nvenc @ 0x55d0c8a4e600] OpenEncodeSessionEx failed: out of memory (10): (no details)",
        "[h264_nvenc @ 0x5581b4c2a2c0] OpenEncodeSessionEx failed: incompatible client key (21): (no details)",
        "cannot start the pipeline: Element failed to change its state \
         (/GstPipeline:pipeline2/GstBin:bin4/GstVaH264Enc:vah264enc0: Could not initialize supporting library. \
         (gstvideoencoder.c(1755): gst_video_encoder_change_state (): Failed to open encoder))",
    ];

    /// Start failures that are not about encoder sessions: they must stay errors.
    const BROKEN: &[&str] = &[
        "/GstPipeline:pipeline0/GstSoupHTTPSrc:src: Not Found (Could not read from resource.)",
        "/GstPipeline:pipeline0/GstTSDemux:demux: Internal data stream error. \
         (../gst/mpegtsdemux/mpegtsbase.c(1752): mpegts_base_loop (): streaming stopped, reason not-negotiated (-4))",
        "/GstPipeline:pipeline0/GstBin:bin1/GstX264Enc:x264enc0: Could not encode stream. \
         (gstx264enc.c(2490): gst_x264_enc_encode_frame (): Encode x264 frame failed. gst_x264_enc_encode_frame)",
        "/GstPipeline:pipeline4/GstBin:bin3/GstNvH264Enc:nvh264enc0: Could not encode stream. \
         (gstnvbaseenc.c(2287): gst_nv_base_enc_bitstream_thread (): Failed to lock bitstream buffer 0x7f, ret 8)",
        "cannot start the pipeline: Element failed to change its state",
        "no data for 10s",
        "the receiver ended the stream",
        "[h264_nvenc @ 0x55d0c8a4e600] No capable devices found",
    ];

    #[test]
    fn session_cap_errors_mean_full() {
        for text in FULL {
            assert!(is_encoder_full(text), "{text}");
        }
    }

    #[test]
    fn other_start_errors_do_not() {
        for text in BROKEN {
            assert!(!is_encoder_full(text), "{text}");
        }
    }
}
