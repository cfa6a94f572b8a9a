import os
import threading

import arbiter

REQUEST = {"principal": {"type": "U", "id": "1"}, "action": {"type": "Action", "id": "x"}, "resource": {"type": "R", "id": "1"}}
A = {"p.cedar": '@id("a") permit (principal, action, resource);'}
B = {"p.cedar": '@id("b") permit (principal, action, resource);'}


def test_threads_share_an_engine_while_it_reloads():
    engine = arbiter.Engine.from_files(A)
    stop = threading.Event()
    seen, bad = [], []

    def decide():
        while not stop.is_set():
            d = engine.authorize(**REQUEST)
            (seen if d.allowed and d.reasons in (["a"], ["b"]) else bad).append(d)
            many = engine.authorize_many([REQUEST] * 20)
            if not all(m.allowed and m.reasons == many[0].reasons for m in many):
                bad.append(many)

    threads = [threading.Thread(target=decide) for _ in range(6)]
    for t in threads:
        t.start()
    for i in range(200):
        engine.reload_from_files(B if i % 2 else A)
    stop.set()
    for t in threads:
        t.join()
    assert seen and not bad


def test_fork_after_loading_decides_in_child_and_parent():
    engine = arbiter.Engine.from_files(A)
    assert engine.authorize(**REQUEST).reasons == ["a"]
    logged = []
    engine.set_decision_log(logged.append)
    pid = os.fork()
    if pid == 0:
        ok = engine.authorize(**REQUEST).reasons == ["a"]
        engine.reload_from_files(B)
        ok = ok and engine.authorize(**REQUEST).reasons == ["b"] and len(logged) == 2
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The child's reload is its own.
    assert engine.authorize(**REQUEST).reasons == ["a"]
