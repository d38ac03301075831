// libFuzzer entry point for the frame decoder and the control-payload decoders.
//
// Built by fuzz/run.sh with `swiftc -sanitize=fuzzer,address -parse-as-library` together with the
// decoder's sources (FrameCore.swift, which needs only the standard library, and the message
// files, which need only Foundation). Every input is split into frames exactly as a connection
// would; each decoded message must re-encode to bytes that decode to the same message.
// `FrameStreamCheck.run` traps on a broken round trip, and the sanitizer on memory errors.

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzFrameDecoder(_ data: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    _ = FrameStreamCheck.run(UnsafeRawBufferPointer(start: data, count: count))
    return 0
}
