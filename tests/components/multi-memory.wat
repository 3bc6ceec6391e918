;; A fault (world `fault` of faults/sdk/wit/faultline.wit) with two core memories, each in its own core
;; module instance: `inject` grows the first memory by `duration-ms` pages (of 64 KiB) and then
;; the second by as many. Each memory alone stays under a cap of 2 × (1 + pages) pages, the two
;; together do not: a per-memory cap lets it through, a cap over the whole store stops it.
;;
;; tests/build.rs compiles this text to a binary component (the host loads no WAT) and replaces
;; the description placeholder below with data segments holding `describe`'s answer laid out by the canonical ABI.
(component
  (core module $Other
    (memory 1)
    (func (export "grow") (param $pages i32) (result i32)
      (memory.grow (local.get $pages))))

  (core module $Main
    (import "other" "grow" (func $grow-other (param i32) (result i32)))
    (memory (export "memory") 1)
    ;; 16: `ok` of result<_, error>; 32: `ok(empty list)` of result<list<u8>, error>. Both are
    ;; all zero bytes, as fresh memory is. 1024: describe's record. 8192 on: cabi_realloc.
    (global $heap (mut i32) (i32.const 8192))
    @DESCRIPTION@

    ;; A bump allocator: the host only ever asks it for room to pass the call's arguments.
    (func (export "cabi_realloc")
      (param $old i32) (param $old-size i32) (param $align i32) (param $size i32) (result i32)
      (local $p i32)
      (local.set $p
        (i32.and
          (i32.add (global.get $heap) (i32.sub (local.get $align) (i32.const 1)))
          (i32.sub (i32.const 0) (local.get $align))))
      (global.set $heap (i32.add (local.get $p) (local.get $size)))
      (local.get $p))

    (func (export "describe") (result i32)
      (i32.const 1024))

    (func (export "validate") (param i32 i32) (result i32)
      (i32.const 16))

    ;; request: params (ptr, len), duration-ms, execution-id (ptr, len).
    (func (export "inject") (param i32 i32 i64 i32 i32) (result i32)
      (local $pages i32)
      (local.set $pages (i32.wrap_i64 (local.get 2)))
      (if (i32.eq (memory.grow (local.get $pages)) (i32.const -1))
        (then unreachable))
      (if (i32.eq (call $grow-other (local.get $pages)) (i32.const -1))
        (then unreachable))
      (i32.const 32))

    (func (export "revert") (param i32 i32) (result i32)
      (i32.const 16)))

  (core instance $other (instantiate $Other))
  (core instance $main (instantiate $Main (with "other" (instance $other))))

  ;; The contract's types, exported so the functions below may name them.
  (type $capability-def (enum "log" "rollback" "process" "cgroup" "network" "outbound"))
  (export $capability "capability" (type $capability-def))
  (type $description-def
    (record
      (field "name" string)
      (field "version" string)
      (field "summary" string)
      (field "params-schema" string)
      (field "capabilities" (list $capability))
      (field "revertible" bool)))
  (export $description "description" (type $description-def))
  (type $error-def
    (variant
      (case "denied" string)
      (case "invalid" string)
      (case "unsupported" string)
      (case "target-gone" string)
      (case "failed" string)))
  (export $error "error" (type $error-def))
  (type $inject-request-def
    (record
      (field "params" string)
      (field "duration-ms" u64)
      (field "execution-id" string)))
  (export $inject-request "inject-request" (type $inject-request-def))

  (func (export "describe") (result $description)
    (canon lift (core func $main "describe") (memory (core memory $main "memory"))))
  (func (export "validate") (param "params" string) (result (result (error $error)))
    (canon lift (core func $main "validate") (memory (core memory $main "memory"))
      (realloc (core func $main "cabi_realloc"))))
  (func (export "inject") (param "request" $inject-request)
    (result (result (list u8) (error $error)))
    (canon lift (core func $main "inject") (memory (core memory $main "memory"))
      (realloc (core func $main "cabi_realloc"))))
  (func (export "revert") (param "state" (list u8)) (result (result (error $error)))
    (canon lift (core func $main "revert") (memory (core memory $main "memory"))
      (realloc (core func $main "cabi_realloc")))))
