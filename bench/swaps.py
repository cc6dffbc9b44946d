"""Swaps the tiny demo model N times and prints memory after each swap (the
figures in RELIABILITY.md section "Memory across hot swaps"). FIELD=RssAnon reads
anonymous RSS instead of VmRSS; KEEP=1 leaves the server running to attach
gdb (`call (void)malloc_stats()`).
usage: swaps.py VITRINE N [extra serve flags...]"""
import json, os, shutil, socket, subprocess, sys, tempfile, time, urllib.request, base64

vitrine, n, extra = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
work = tempfile.mkdtemp(prefix="swaps-")
src = os.path.join(work, "src")
subprocess.run([vitrine, "demo-model", "--size", "tiny", "--seed", "0", "--out", src], check=True,
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
repo = os.path.join(work, "repo")
os.makedirs(repo)

def publish(v):
    tmp = os.path.join(repo, f".incoming-{v}")
    shutil.copytree(src, tmp)
    open(os.path.join(tmp, ".ready"), "w").close()
    os.rename(tmp, os.path.join(repo, str(v)))

s = socket.socket(); s.bind(("127.0.0.1", 0)); port = s.getsockname()[1]; s.close()
publish(1)
log = open(os.path.join(work, "server.log"), "w")
env = dict(os.environ, VITRINE_CACHE_DIR=os.environ.get("VITRINE_CACHE_DIR", os.path.expanduser("~/.cache/vitrine-e2e-swaps")))
p = subprocess.Popen([vitrine, "serve", f"--rest_api_port={port}", "--rest_api_host=127.0.0.1", "--port=0",
                      "--model_name=m", f"--model_base_path={repo}", "--file_system_poll_wait_seconds=1",
                      "--tensorflow_inter_op_parallelism=2", *extra], stdout=log, stderr=log, env=env)
url = f"http://127.0.0.1:{port}"
img = open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "../../shared/images/coco_000000039769.jpg"), "rb").read()
body = json.dumps({"instances": [base64.urlsafe_b64encode(img).decode()]}).encode()

def status():
    try:
        with urllib.request.urlopen(url + "/v1/models/m", timeout=5) as r:
            return {int(v["version"]): v["state"] for v in json.load(r)["model_version_status"]}
    except Exception:
        return {}

def predict():
    req = urllib.request.Request(url + "/v1/models/m:predict", data=body, headers={"content-type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        return r.headers.get("x-vitrine-model-version")

def rss():
    for line in open(f"/proc/{p.pid}/status"):
        if line.startswith(os.environ.get("FIELD", "VmRSS") + ":"):
            return int(line.split()[1]) / 1024

def wait(cond, what):
    t = time.time()
    while not cond():
        if p.poll() is not None:
            sys.exit(f"server exited; see {work}/server.log")
        if time.time() - t > 600:
            sys.exit(f"timeout: {what}")
        time.sleep(0.1)

wait(lambda: status().get(1) == "AVAILABLE", "v1")
predict()
figures = [rss()]
for v in range(2, n + 2):
    publish(v)
    wait(lambda: status().get(v) == "AVAILABLE" and status().get(v - 1) != "AVAILABLE", f"v{v}")
    shutil.rmtree(os.path.join(repo, str(v - 1)))
    assert predict() == str(v)
    time.sleep(0.3)
    figures.append(rss())
    print(f"swap {v-1}: {figures[-1]:.1f} MB", flush=True)
print("pid", p.pid, "log", work + "/server.log")
print("RSS", [round(f, 1) for f in figures])
if os.environ.get("KEEP"):
    print("kept running; kill", p.pid)
    sys.exit(0)
p.kill()
