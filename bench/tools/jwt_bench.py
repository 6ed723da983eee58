#!/usr/bin/env python3
"""A JWT for the jwt benchmark rows (callgrind.sh with OURS_PLUGINS=jwt): writes the consumer's
verification key to DIR/jwt-key.txt (the HS256 secret, or the RS256 / ES256 public key PEM, made
here) and prints the token, `iss` = bench-iss (the jwt_secrets key). Needs python3-cryptography.

Usage: jwt_bench.py ALG DIR     ALG: HS256 | RS256 | ES256
"""

import base64
import json
import os
import sys

from cryptography.hazmat.primitives import hashes, hmac, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def main():
    alg, out = sys.argv[1], sys.argv[2]
    signing_input = (b64(json.dumps({"alg": alg, "typ": "JWT"}).encode()) + "." +
                     b64(json.dumps({"iss": "bench-iss", "sub": "bench"}).encode())).encode()
    public = serialization.PublicFormat.SubjectPublicKeyInfo
    if alg == "HS256":
        secret = "bench-secret-0123456789abcdef0123"
        h = hmac.HMAC(secret.encode(), hashes.SHA256())
        h.update(signing_input)
        sig, key = h.finalize(), secret
    elif alg == "RS256":
        k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sig = k.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        key = k.public_key().public_bytes(serialization.Encoding.PEM, public).decode()
    elif alg == "ES256":
        k = ec.generate_private_key(ec.SECP256R1())
        r, s = decode_dss_signature(k.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
        key = k.public_key().public_bytes(serialization.Encoding.PEM, public).decode()
    else:
        sys.exit(f"unknown ALG {alg}: HS256, RS256 or ES256")
    with open(os.path.join(out, "jwt-key.txt"), "w") as f:
        f.write(key)
    print(signing_input.decode() + "." + b64(sig))


if __name__ == "__main__":
    main()
