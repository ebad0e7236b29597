{
  "targets": [
    {
      "target_name": "freqkv_native",
      "sources": [
        "src/kernels/native/addon.cc"
      ],
      "cflags_cc": ["-O3", "-std=c++17", "-fno-exceptions", "-fno-math-errno"],
      "cflags_cc!": ["-fno-rtti"],
      "ldflags": ["-pthread"],
      "cflags": ["-pthread"]
    }
  ]
}
