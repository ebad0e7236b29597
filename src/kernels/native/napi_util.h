// Argument helpers for the Node-API bindings (addon.cc, dct.cc). Each getter validates one
// argument; on bad input it throws a JavaScript TypeError/RangeError naming the argument and
// returns false, and the binding then returns nullptr.
#pragma once
#include <node_api.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <string>

namespace fk {

// The signature of every exported function.
#define FK_BINDING(name) napi_value name(napi_env env, napi_callback_info info)

// Fetches exactly `n` arguments (missing ones are `undefined`).
inline bool get_args(napi_env env, napi_callback_info info, size_t n, napi_value* argv) {
  size_t argc = n;
  return napi_get_cb_info(env, info, &argc, argv, nullptr, nullptr) == napi_ok;
}

inline bool throw_type(napi_env env, const std::string& msg) {
  napi_throw_type_error(env, nullptr, msg.c_str());
  return false;
}

inline bool throw_range(napi_env env, const std::string& msg) {
  napi_throw_range_error(env, nullptr, msg.c_str());
  return false;
}

// A typed array of the given type; data may be null when its length is 0.
template <typename T>
inline bool get_typed(napi_env env, napi_value v, napi_typedarray_type want, const char* type_name, const char* name,
                      T** data, size_t* len) {
  napi_typedarray_type type;
  void* p = nullptr;
  // napi_invalid_arg (and no pending exception) when v is not a typed array.
  if (napi_get_typedarray_info(env, v, &type, len, &p, nullptr, nullptr) == napi_ok && type == want) {
    *data = static_cast<T*>(p);
    return true;
  }
  return throw_type(env, std::string(name) + ": expected a " + type_name);
}

inline bool get_f32(napi_env env, napi_value v, const char* name, float** data, size_t* len) {
  return get_typed(env, v, napi_float32_array, "Float32Array", name, data, len);
}

inline bool get_i32(napi_env env, napi_value v, const char* name, int32_t** data, size_t* len) {
  return get_typed(env, v, napi_int32_array, "Int32Array", name, data, len);
}

inline bool get_number(napi_env env, napi_value v, const char* name, double* out) {
  if (napi_get_value_double(env, v, out) != napi_ok) return throw_type(env, std::string(name) + ": expected a number");
  return true;
}

// A dimension: an integer in [0, 2^31).
inline bool get_dim(napi_env env, napi_value v, const char* name, int* out) {
  double d;
  if (!get_number(env, v, name, &d)) return false;
  if (!(d >= 0 && d <= 2147483647.0 && std::floor(d) == d)) {
    char num[64];
    std::snprintf(num, sizeof num, "%g", d);
    return throw_range(env, std::string(name) + ": expected a non-negative integer, got " + num);
  }
  *out = static_cast<int>(d);
  return true;
}

inline bool get_bool(napi_env env, napi_value v, const char* name, bool* out) {
  napi_valuetype t;
  napi_typeof(env, v, &t);
  if (t == napi_undefined) {
    *out = false;
    return true;
  }
  if (napi_get_value_bool(env, v, out) != napi_ok) return throw_type(env, std::string(name) + ": expected a boolean");
  return true;
}

// Throws a RangeError unless a buffer of `len` elements holds `expected` (>= 0) elements.
inline bool need(napi_env env, const char* name, size_t len, int64_t expected) {
  if (expected < 0 || static_cast<uint64_t>(expected) > len) {
    return throw_range(env, std::string(name) + ": expected at least " + std::to_string(expected) + " elements, got " +
                                std::to_string(len));
  }
  return true;
}

inline napi_value undefined(napi_env env) {
  napi_value u;
  napi_get_undefined(env, &u);
  return u;
}

}  // namespace fk
