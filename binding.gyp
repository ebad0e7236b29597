{
  "targets": [
    {
      "target_name": "freqkv_native",
      "sources": [
        "src/kernels/native/addon.cc",
        "src/kernels/native/attention.cc",
        "src/kernels/native/dct.cc",
        "src/kernels/native/gemm.cc",
        "src/kernels/native/ops.cc",
        "src/kernels/native/pool.cc"
      ],
      "cflags_cc": ["-O3", "-std=c++17", "-fno-exceptions", "-fno-math-errno", "-Wall", "-Wno-unused-function"],
      "cflags_cc!": ["-fno-rtti"],
      "ldflags": ["-pthread"],
      "cflags": ["-pthread"],
      "xcode_settings": {
        "OTHER_CPLUSPLUSFLAGS": ["-O3", "-std=c++17", "-fno-math-errno"]
      }
    }
  ]
}
