# node-gyp build of the one native addon "pem_native": every native/*.cc and native/fuse/*.cc, N-API via node-addon-api
# (no C++ exceptions).
# OpenSSL comes from the node binary itself (its headers are on node-gyp's include path): never add -lcrypto here,
# or two OpenSSLs end up in one process. zstd and lz4 are Debian's system libraries (libzstd-dev, liblz4-dev);
# zlib is the copy node exports. The native FUSE session links Debian's libfuse3 (libfuse3-dev, via pkg-config).
# Linked with -z now (below: no lazy symbol binding while file keys are in registers).
{
  "targets": [
    {
      "target_name": "pem_native",
      "sources": [
        "<!@(node -p \"require('fs').readdirSync('native').filter(f => f.endsWith('.cc')).sort().map(f => 'native/' + f).join(' ')\")",
        "<!@(node -p \"require('fs').readdirSync('native/fuse').filter(f => f.endsWith('.cc')).sort().map(f => 'native/fuse/' + f).join(' ')\")"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "<!@(pkg-config --cflags-only-I fuse3 | sed 's/-I//g')"
      ],
      "defines": ["NAPI_DISABLE_CPP_EXCEPTIONS", "NAPI_VERSION=8"],
      "cflags!": ["-fno-exceptions", "-O2", "-O0"],
      "cflags_cc!": ["-fno-exceptions", "-O2", "-O0"],
      "cflags": ["-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-O3", "-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "libraries": ["-lzstd", "-llz4", "<!@(pkg-config --libs fuse3)"],
      # Bound at load (BIND_NOW): a lazy PLT call resolved after a file key passed through vector registers would
      # have _dl_runtime_resolve save them (XSAVE) on the worker's stack, where a core or gcore finds the key bytes
      # (test/pem-fs/revoke.test.ts).
      "ldflags": ["-Wl,-z,now"]
    }
  ]
}
