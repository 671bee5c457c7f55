#!/usr/bin/env python3
"""Helpers of scripts/gpu-kit (shipped beside it in the packed kit; standard library only, Python 3.8+).

  gpu-kit.py dedupe DIR                      hard-links identical files under DIR (tar then stores them once)
  gpu-kit.py strip-runtimeconfig DIR         drops the build machine's CryptoTensors.TorchLib from *.runtimeconfig.json
  gpu-kit.py parts DIR [N]                   the biggest parts of an unpacked payload (JSON)
  gpu-kit.py cuda-probe                      {"loads":..,"devices":..,"error":..} for libcuda.so.1 (ctypes)
  gpu-kit.py find-torch                      {"python":..,"torch_dir":..,"torch_lib":..,"version":..} or {"error":..}
  gpu-kit.py torch-check BRIDGE TORCH_LIB EXPECTED_VERSION
                                             whether libLibTorchSharp.so can run on that libtorch (JSON): the GLIBCXX
                                             versions it needs from the loaded libstdc++, and its undefined symbols
                                             that no library of torch/lib or of the C/C++ runtime defines
  gpu-kit.py trx FILE [--cuda-only]          test counts of a TRX file (JSON); --cuda-only: the cases named "cuda"
  gpu-kit.py nvidia-smi CSV_FILE HEADER_FILE figures from nvidia-smi's query output (JSON)
  gpu-kit.py last-json FILE                  the last line of FILE that parses as a JSON object
  gpu-kit.py add-step STEPS NAME STATUS SECONDS REASON FIGURES_FILE
                                             appends one step to the JSON-lines file STEPS
  gpu-kit.py summary STEPS KIT_JSON OUT      writes OUT (summary.json) from the steps and the kit's description
"""
import hashlib
import json
import mmap
import os
import re
import struct
import subprocess
import sys

# --- ELF dynamic symbols ------------------------------------------------------------------------------------------


def elf_dynamic(path):
    """(defined, undefined, needed) for a 64-bit little-endian ELF shared object: the names .dynsym defines; its
    undefined strong (STB_GLOBAL) references as name -> (library, version) from .gnu.version_r, (None, None) when
    unversioned (how libtorch's symbols are referenced); and its DT_NEEDED entries."""
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        if m[:4] != b"\x7fELF" or m[4] != 2 or m[5] != 1:
            raise ValueError(f"{path}: not a 64-bit little-endian ELF file")
        shoff, = struct.unpack_from("<Q", m, 0x28)
        shentsize, shnum = struct.unpack_from("<HH", m, 0x3A)
        sections = [struct.unpack_from("<IIQQQQIIQQ", m, shoff + i * shentsize) for i in range(shnum)]

        def string(index, at):
            s = sections[index]
            end = m.find(b"\0", s[4] + at, s[4] + s[5])
            return m[s[4] + at:end].decode("latin-1")

        defined, undefined, needed = set(), {}, []
        versym, verneed = None, {}
        for (_name, sh_type, _flags, _addr, offset, size, link, info, _align, _entsize) in sections:
            if sh_type == 0x6fffffff:  # SHT_GNU_versym: one half-word per .dynsym entry
                versym = (offset, size // 2)
            elif sh_type == 0x6ffffffe:  # SHT_GNU_verneed: version index -> (file, version)
                at = offset
                for _ in range(info):
                    _v, cnt, vn_file, vn_aux, vn_next = struct.unpack_from("<HHIII", m, at)
                    aux = at + vn_aux
                    for _ in range(cnt):
                        _hash, _fl, other, vna_name, vna_next = struct.unpack_from("<IHHII", m, aux)
                        verneed[other] = (string(link, vn_file), string(link, vna_name))
                        aux += vna_next
                    if vn_next == 0:
                        break
                    at += vn_next
            elif sh_type == 6:  # SHT_DYNAMIC
                for i in range(size // 16):
                    tag, val = struct.unpack_from("<qQ", m, offset + i * 16)
                    if tag == 0:
                        break
                    if tag == 1:  # DT_NEEDED
                        needed.append(string(link, val))
        for (_name, sh_type, _flags, _addr, offset, size, link, _info, _align, entsize) in sections:
            if sh_type != 11:  # SHT_DYNSYM
                continue
            entsize = entsize or 24
            for i in range(1, size // entsize):
                st_name, st_info, _other, st_shndx = struct.unpack_from("<IBBH", m, offset + i * entsize)
                if st_name == 0:
                    continue
                name = string(link, st_name)
                bind = st_info >> 4
                if st_shndx == 0:
                    if bind == 1:  # weak references may stay unresolved
                        index = struct.unpack_from("<H", m, versym[0] + 2 * i)[0] & 0x7FFF if versym and i < versym[1] else 1
                        undefined[name] = verneed.get(index, (None, None))
                elif bind in (1, 2, 10):  # GLOBAL, WEAK, GNU_UNIQUE
                    defined.add(name)
        return defined, undefined, needed


def loaded_library(name):
    """The path the loader picks for a library name (loaded into this process with ctypes), or None."""
    import ctypes
    try:
        ctypes.CDLL(name)
    except OSError:
        return None
    base = name.split(".so")[0]
    with open("/proc/self/maps") as maps:
        for line in maps:
            at = line.find("/")
            if at >= 0 and os.path.basename(line[at:].strip()).startswith(base + ".so"):
                return line[at:].strip()
    return None


def glibcxx_versions(path):
    with open(path, "rb") as f:
        data = f.read()
    return set(v.decode() for v in re.findall(rb"GLIBCXX_3\.4\.\d+", data))


def version_key(v):
    return [int(x) for x in re.findall(r"\d+", v)]


def demangle(names):
    try:
        p = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True, timeout=30)
        out = p.stdout.splitlines()
        if p.returncode == 0 and len(out) == len(names):
            return out
    except (OSError, subprocess.SubprocessError):
        pass
    return list(names)


def torch_check(bridge, torch_lib, expected):
    """Can TorchSharp's native bridge run on the libtorch in torch_lib? Never loads either library."""
    result = {"bridge": bridge, "torch_lib": torch_lib, "expected_libtorch": expected}
    version_file = os.path.join(os.path.dirname(torch_lib.rstrip("/")), "version.py")
    version = None
    if os.path.isfile(version_file):
        with open(version_file) as f:
            m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", f.read(), re.M)
            version = m.group(1) if m else None
    result["torch_version"] = version
    base = (version or "").split("+")[0]
    result["version_match"] = bool(version) and version.split("+")[0].split(".")[:2] == expected.split(".")[:2]
    reasons = []
    # GLIBCXX: the libstdc++ a .NET process loads (the system one, found like the loader finds it).
    libstdcxx = loaded_library("libstdc++.so.6")
    result["libstdcxx"] = libstdcxx
    if libstdcxx:
        need = glibcxx_versions(bridge) - glibcxx_versions(libstdcxx)
        result["glibcxx_missing"] = sorted(need, key=version_key)
        if need:
            reasons.append(f"libLibTorchSharp.so needs {max(need, key=version_key)}, which {libstdcxx} lacks")
    # Symbols: what the bridge leaves undefined against what torch/lib and the C/C++ runtime define.
    b_defined, b_undefined, b_needed = elf_dynamic(bridge)
    result["bridge_needed"] = b_needed
    have = set()
    scanned = []
    for entry in sorted(os.listdir(torch_lib)):
        path = os.path.join(torch_lib, entry)
        if ".so" not in entry or not os.path.isfile(path) or os.path.islink(path):
            continue
        try:
            d, _, _ = elf_dynamic(path)
        except (ValueError, OSError, struct.error):
            continue
        have |= d
        scanned.append(entry)
    for lib in ("libstdc++.so.6", "libgcc_s.so.1", "libm.so.6", "libc.so.6", "libpthread.so.0", "libdl.so.2", "ld-linux-x86-64.so.2"):
        path = loaded_library(lib)
        if path:
            try:
                have |= elf_dynamic(path)[0]
            except (ValueError, OSError, struct.error):
                pass
    result["libraries_scanned"] = scanned
    absent = [n for n in ("libc10.so", "libtorch_cpu.so", "libtorch.so") if n not in scanned]
    if absent:
        reasons.append(f"no libtorch in {torch_lib}: {', '.join(absent)} missing")
    # Unversioned references are libtorch's (c10, at::, torch::); versioned ones name their runtime library.
    torch_refs = {n for n, (lib, _v) in b_undefined.items() if lib is None}
    missing = sorted(torch_refs - have - b_defined)
    runtime_missing = sorted(f"{n}@{v} ({lib})" for n, (lib, v) in b_undefined.items()
                             if lib is not None and n not in have and n not in b_defined)
    result["libtorch_references"] = len(torch_refs)
    result["missing_symbols_count"] = len(missing)
    result["missing_symbols"] = demangle(missing[:40])
    result["missing_runtime_symbols"] = runtime_missing[:20]
    if missing and not absent:
        shown = "; ".join(result["missing_symbols"][:5])
        reasons.append(f"libtorch {version or '?'} in {torch_lib} lacks {len(missing)} of the {len(torch_refs)} symbols "
                       f"libLibTorchSharp.so (built for libtorch {expected}) needs from it, e.g. {shown}")
    result["compatible"] = not reasons
    result["reason"] = "; ".join(reasons) if reasons else None
    if not reasons and not result["version_match"]:
        result["note"] = (f"PyTorch {version} is not the libtorch {expected} TorchSharp was built for, but every symbol "
                          "libLibTorchSharp.so needs is there: the torch steps run")
    return result


# --- other helpers ------------------------------------------------------------------------------------------------


def dedupe(root):
    seen, saved = {}, 0
    for dirpath, _dirs, files in os.walk(root):
        for name in sorted(files):
            path = os.path.join(dirpath, name)
            if os.path.islink(path) or not os.path.isfile(path):
                continue
            st = os.stat(path)
            h = hashlib.sha256()
            with open(path, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            key = (h.hexdigest(), st.st_size, st.st_mode)
            if key in seen:
                os.unlink(path)
                os.link(seen[key], path)
                saved += st.st_size
            else:
                seen[key] = path
    print(json.dumps({"deduplicated_bytes": saved}))


def strip_runtimeconfig(root):
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if name.endswith(".runtimeconfig.json"):
                path = os.path.join(dirpath, name)
                with open(path) as f:
                    doc = json.load(f)
                props = doc.get("runtimeOptions", {}).get("configProperties", {})
                if props.pop("CryptoTensors.TorchLib", None) is not None:
                    with open(path, "w") as f:
                        json.dump(doc, f, indent=2)


def parts(root, n):
    files, tops = [], {}
    for dirpath, _dirs, names in os.walk(root):
        for name in names:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            st = os.stat(path)
            rel = os.path.relpath(path, root)
            files.append((st.st_size, rel, st.st_ino))
    inodes = set()
    for size, rel, ino in files:
        if ino in inodes:
            continue
        inodes.add(ino)
        top = "/".join(rel.split("/")[:2]) if rel.startswith(("dotnet/shared", "tests/")) else rel.split("/")[0]
        tops[top] = tops.get(top, 0) + size
    unique = {}
    for size, rel, ino in files:
        unique.setdefault(ino, (size, rel))
    biggest = sorted(unique.values(), reverse=True)[:n]
    print(json.dumps({
        "unpacked_bytes": sum(s for s, _ in unique.values()),
        "parts": dict(sorted(tops.items(), key=lambda kv: -kv[1])),
        "biggest_files": {rel: size for size, rel in biggest},
    }, indent=1))


def cuda_probe():
    import ctypes
    out = {"loads": False, "devices": 0, "error": None}
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError as e:
        out["error"] = str(e)
        print(json.dumps(out))
        return
    out["loads"] = True
    out["path"] = loaded_library("libcuda.so.1")
    try:
        ctypes.CDLL("libcuda.so")
        out["unversioned_loads"] = True
    except OSError:
        out["unversioned_loads"] = False  # ILGPU asks for "cuda" (libcuda.so), not libcuda.so.1
    rc = lib.cuInit(0)
    if rc != 0:
        out["error"] = f"cuInit returned {rc}"
    else:
        count = ctypes.c_int(0)
        rc = lib.cuDeviceGetCount(ctypes.byref(count))
        out["devices"] = count.value if rc == 0 else 0
        if rc != 0:
            out["error"] = f"cuDeviceGetCount returned {rc}"
    print(json.dumps(out))


def find_torch():
    import importlib.util
    out = {"python": sys.executable}
    try:
        spec = importlib.util.find_spec("torch")
    except (ImportError, ValueError) as e:
        spec = None
        out["error"] = f"{sys.executable} cannot look for torch: {e}"
    if spec is None or not spec.origin:
        out.setdefault("error", f"no PyTorch: {sys.executable} finds no torch package")
        print(json.dumps(out))
        return
    torch_dir = os.path.dirname(spec.origin)
    out["torch_dir"] = torch_dir
    out["torch_lib"] = os.path.join(torch_dir, "lib")
    version_file = os.path.join(torch_dir, "version.py")
    if os.path.isfile(version_file):
        with open(version_file) as f:
            text = f.read()
        m = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", text, re.M)
        out["version"] = m.group(1) if m else None
        m = re.search(r"^cuda\s*(?::\s*\w+(?:\[\w+\])?\s*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
        out["cuda"] = m.group(1) if m else None
    if not os.path.isdir(out["torch_lib"]):
        out["error"] = f"PyTorch at {torch_dir} has no lib folder"
    print(json.dumps(out))


NS = "{http://microsoft.com/schemas/VisualStudio/TeamTest/2010}"


def trx(path, cuda_only):
    import xml.etree.ElementTree as ET
    root = ET.parse(path).getroot()
    counts = {"total": 0, "passed": 0, "failed": 0, "skipped": 0}
    skip_reasons, failures, drivers = {}, [], set()
    for result in root.iter(NS + "UnitTestResult"):
        name = result.get("testName") or ""
        if cuda_only and '"cuda"' not in name:
            continue
        outcome = result.get("outcome")
        state = "failed" if outcome in ("Failed", "Error", "Timeout", "Aborted") else "passed" if outcome == "Passed" else "skipped"
        counts["total"] += 1
        counts[state] += 1
        message = result.find(f"{NS}Output/{NS}ErrorInfo/{NS}Message")
        text = (message.text or "").strip().splitlines()[0] if message is not None and message.text else ""
        stdout = result.find(f"{NS}Output/{NS}StdOut")
        if stdout is not None and stdout.text:
            drivers.update(re.findall(r"CUDA driver: (\w+)", stdout.text))
        if state == "skipped" and text:
            skip_reasons[text] = skip_reasons.get(text, 0) + 1
        if state == "failed":
            failures.append(f"{name}: {text}" if text else name)
    counts["skip_reasons"] = skip_reasons
    counts["failures"] = failures[:20]
    if drivers:
        counts["cuda_driver"] = ",".join(sorted(drivers))
    print(json.dumps(counts))


def nvidia_smi(csv_file, header_file):
    fig = {}
    with open(csv_file) as f:
        rows = [r.strip() for r in f if r.strip()]
    gpus = []
    for row in rows:
        cols = [c.strip() for c in row.split(",")]
        if len(cols) >= 4:
            gpus.append({"name": cols[0], "memory_total_mib": int(re.sub(r"\D", "", cols[1]) or 0),
                         "driver_version": cols[2], "compute_cap": cols[3]})
    fig["gpus"] = gpus
    fig["gpu_count"] = len(gpus)
    if os.path.isfile(header_file):
        with open(header_file) as f:
            m = re.search(r"CUDA Version:\s*([\d.]+)", f.read())
            fig["cuda_version"] = m.group(1) if m else None
    print(json.dumps(fig))


def last_json(path):
    found = None
    with open(path, errors="replace") as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    found = value
    if found is None:
        sys.exit(1)
    print(json.dumps(found))


def add_step(steps, name, status, seconds, reason, figures_file):
    figures = {}
    if figures_file and os.path.isfile(figures_file) and os.path.getsize(figures_file) > 0:
        with open(figures_file) as f:
            try:
                figures = json.load(f)
            except ValueError as e:
                figures = {"unparsed": str(e)}
    step = {"name": name, "status": status, "seconds": round(float(seconds), 1),
            "reason": reason or None, "figures": figures}
    with open(steps, "a") as f:
        f.write(json.dumps(step) + "\n")


def summary(steps_file, kit_json, out):
    steps = []
    if os.path.isfile(steps_file):
        with open(steps_file) as f:
            steps = [json.loads(line) for line in f if line.strip()]
    kit = {}
    if kit_json and os.path.isfile(kit_json):
        with open(kit_json) as f:
            kit = json.load(f)
    counts = {s: sum(1 for x in steps if x["status"] == s) for s in ("passed", "failed", "skipped")}
    doc = {"kit": kit, "counts": counts, "steps": steps}
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    os.replace(tmp, out)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "dedupe":
        dedupe(args[0])
    elif cmd == "strip-runtimeconfig":
        strip_runtimeconfig(args[0])
    elif cmd == "parts":
        parts(args[0], int(args[1]) if len(args) > 1 else 12)
    elif cmd == "cuda-probe":
        cuda_probe()
    elif cmd == "find-torch":
        find_torch()
    elif cmd == "torch-check":
        print(json.dumps(torch_check(args[0], args[1], args[2])))
    elif cmd == "trx":
        trx(args[0], "--cuda-only" in args[1:])
    elif cmd == "nvidia-smi":
        nvidia_smi(args[0], args[1])
    elif cmd == "last-json":
        last_json(args[0])
    elif cmd == "add-step":
        add_step(*args[:6])
    elif cmd == "summary":
        summary(args[0], args[1], args[2])
    else:
        sys.exit(f"unknown command {cmd}\n{__doc__}")


if __name__ == "__main__":
    main(sys.argv)
