#!/usr/bin/env python3
"""Independent implementation for cross-checks: Google Tink's AES-GCM-HKDF streaming AEAD.

Used by the Swift tests (Tests/EnvelopeTests/TinkInteropTests.swift):

    tink_tool.py encrypt KEY_HEX AD_HEX SEGMENT_SIZE PLAINTEXT_FILE CIPHERTEXT_FILE
    tink_tool.py decrypt KEY_HEX AD_HEX SEGMENT_SIZE CIPHERTEXT_FILE PLAINTEXT_FILE

KEY_HEX is the raw 32-byte key value (Tink's AesGcmHkdfStreamingKey.key_value), imported
into a one-key keyset with HKDF-SHA256 and a 32-byte derived key. Exit status 0 on
success, 3 when Tink refuses the ciphertext (authentication failure), 2 on usage errors.
"""
import sys

import tink
from tink import secret_key_access
from tink import streaming_aead
from tink.proto import aes_gcm_hkdf_streaming_pb2, common_pb2, tink_pb2


def primitive(key_hex: str, segment_size: int):
    streaming_aead.register()
    key = aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingKey(
        version=0,
        key_value=bytes.fromhex(key_hex),
        params=aes_gcm_hkdf_streaming_pb2.AesGcmHkdfStreamingParams(
            ciphertext_segment_size=segment_size,
            derived_key_size=32,
            hkdf_hash_type=common_pb2.SHA256,
        ),
    )
    keyset = tink_pb2.Keyset(
        primary_key_id=1,
        key=[
            tink_pb2.Keyset.Key(
                key_data=tink_pb2.KeyData(
                    type_url="type.googleapis.com/google.crypto.tink.AesGcmHkdfStreamingKey",
                    value=key.SerializeToString(),
                    key_material_type=tink_pb2.KeyData.SYMMETRIC,
                ),
                status=tink_pb2.ENABLED,
                key_id=1,
                output_prefix_type=tink_pb2.RAW,
            )
        ],
    )
    handle = tink.proto_keyset_format.parse(keyset.SerializeToString(), secret_key_access.TOKEN)
    return handle.primitive(streaming_aead.StreamingAead)


def main(argv):
    if len(argv) != 7 or argv[1] not in ("encrypt", "decrypt"):
        print(__doc__, file=sys.stderr)
        return 2
    _, op, key_hex, ad_hex, seg, src, dst = argv
    p = primitive(key_hex, int(seg))
    ad = bytes.fromhex(ad_hex)
    if op == "encrypt":
        with open(src, "rb") as f:
            data = f.read()
        with open(dst, "wb") as out:
            with p.new_encrypting_stream(out, ad) as enc:
                # Write in uneven pieces: the writer must segment exactly as one big write.
                pos, step = 0, 7919
                while pos < len(data):
                    enc.write(data[pos:pos + step])
                    pos += step
        return 0
    try:
        with open(src, "rb") as f:
            with p.new_decrypting_stream(f, ad) as dec:
                data = dec.read()
    except tink.TinkError as e:
        print(f"tink refused the ciphertext: {e}", file=sys.stderr)
        return 3
    with open(dst, "wb") as out:
        out.write(data)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
