/* e3backup dashboard: small progressive enhancements. Every page works without this script. */
"use strict";

(function () {
  const csrf = () => (document.querySelector('meta[name="csrf-token"]') || {}).content || "";
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  // Ask the agent something through the server and wait (the twin of routes/agent_answers.py).
  // The server waits up to 30 s, then answers 504 with a command_id; we wait again on that same
  // command: 3 attempts in all, as the seeds say. Returns the answer's JSON, or null once `status`
  // says why there is none (`failed` starts that line). Network errors are thrown to the caller.
  const ASK_ATTEMPTS = 3;
  const askAgent = async (url, status, asking, failed) => {
    let commandId = null;
    for (let attempt = 0; attempt < ASK_ATTEMPTS; attempt++) {
      if (!attempt) status.textContent = asking;
      const target = new URL(url, window.location.href);
      if (commandId) target.searchParams.set("command_id", commandId);
      const response = await fetch(target, { method: "POST", headers: { "X-CSRF-Token": csrf(), Accept: "application/json" } });
      const body = await response.json().catch(() => ({}));
      if (response.ok) return body;
      if (response.status === 504 && body.command_id) {
        if (attempt === ASK_ATTEMPTS - 1) break;
        commandId = body.command_id;
        status.textContent = `The agent has not answered yet; waiting again (retry ${attempt + 1} of ${ASK_ATTEMPTS} attempts in all)…`;
        await sleep(1500);
        continue;
      }
      status.textContent = `${failed}: ${body.detail || "HTTP " + response.status}`;
      return null;
    }
    status.textContent = `The agent did not answer after ${ASK_ATTEMPTS} attempts. Is it online? Try again later.`;
    return null;
  };

  // Selects that apply at once (tenant switcher, run filter); the button stays for keyboards.
  // Arrow keys only move the choice (no reload per press); Enter or the button applies it.
  document.querySelectorAll("form[data-autosubmit] select").forEach((select) => {
    let keyboard = false;
    select.addEventListener("keydown", (event) => {
      keyboard = true;
      if (event.key === "Enter") {
        event.preventDefault();
        select.form.submit();
      }
    });
    select.addEventListener("pointerdown", () => { keyboard = false; });
    select.addEventListener("change", () => { if (!keyboard) select.form.submit(); });
  });

  // Times in the browser's time zone; the UTC time stays in the tooltip.
  const localTime = new Intl.DateTimeFormat(undefined, {year: "numeric", month: "2-digit", day: "2-digit",
    hour: "2-digit", minute: "2-digit", timeZoneName: "short"});
  document.querySelectorAll("time[datetime]").forEach((el) => {
    const when = new Date(el.getAttribute("datetime"));
    if (Number.isNaN(when.getTime())) return;
    if (!el.title) el.title = el.textContent.trim();
    el.textContent = localTime.format(when);
  });

  // After a failed submit, focus moves to the error summary (screen readers read it first).
  const summary = document.querySelector("[data-error-summary]");
  if (summary) summary.focus();

  // Copy buttons (the enrollment command).
  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const input = document.getElementById(button.dataset.copy);
      input.select();
      try {
        await navigator.clipboard.writeText(input.value);
        button.textContent = "Copied";
      } catch (e) {
        button.textContent = "Press Ctrl+C";
      }
    });
  });

  // --- job wizard ---------------------------------------------------------------------------
  const wizard = document.getElementById("job-wizard");
  if (wizard) {
    const checked = (name) => (wizard.querySelector(`input[name="${name}"]:checked`) || {}).value;
    const showSections = () => {
      const engine = checked("engine") || "files";
      wizard.querySelectorAll("[data-engines]").forEach((el) => {
        el.hidden = !el.dataset.engines.split(" ").includes(engine);
      });
      // what a Windows agent cannot run (an image proof needs Linux) is not offered there
      const agent = document.getElementById("agent_id").selectedOptions[0];
      const windows = /^win/i.test((agent && agent.dataset.platform) || "");
      wizard.querySelectorAll("[data-linux-only]").forEach((el) => {
        if (windows && el.dataset.linuxOnly.split(" ").includes(engine)) el.hidden = true;
        el.querySelectorAll("select, input").forEach((control) => { control.disabled = el.hidden; });
      });
      const dest = checked("destination.type") || "s3";
      wizard.querySelectorAll("[data-destination]").forEach((el) => {
        el.hidden = !el.dataset.destination.split(" ").includes(dest);
      });
      // gateway or direct: only for a repository in a bucket (a saved folder destination is direct)
      const mode = document.getElementById("storage-mode");
      if (mode) {
        const saved = document.getElementById("destination_id");
        const kind = saved && saved.selectedOptions[0] ? saved.selectedOptions[0].dataset.type : "";
        if (dest === "saved" && kind === "local") mode.hidden = true;
        mode.querySelectorAll("input").forEach((radio) => { radio.disabled = !!radio.closest("[hidden]"); });
      }
    };
    // Only the engines the chosen agent reported (an agent that never reported gets them all).
    const offerEngines = () => {
      const option = document.getElementById("agent_id").selectedOptions[0];
      const engines = option && option.dataset.engines !== undefined ? option.dataset.engines.split(" ") : null;
      const radios = [...wizard.querySelectorAll('input[name="engine"]')];
      radios.forEach((radio) => {
        const off = engines !== null && !engines.includes(radio.value);
        radio.disabled = off;
        const note = document.getElementById(`engine-${radio.value}-unavailable`);
        note.hidden = !off;
        note.textContent = `Not available on this agent (${option.dataset.platform}).`;
      });
      const current = radios.find((r) => r.checked);
      if (current && current.disabled) {
        const first = radios.find((r) => !r.disabled);
        if (first) first.checked = true;
      }
    };
    wizard.addEventListener("change", (event) => {
      if (event.target.name === "agent_id") offerEngines();
      if (["engine", "destination.type", "destination_id", "agent_id"].includes(event.target.name)) showSections();
    });
    offerEngines();
    showSections();

    const agentSelect = document.getElementById("agent_id");
    const volumeSelect = document.getElementById("disk_source_volume");
    const status = document.getElementById("disks-status");
    const refresh = document.getElementById("refresh-disks");

    const fillVolumes = async (agentId) => {
      const response = await fetch(`/agents/${agentId}/disk-choices`, { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`disk list: HTTP ${response.status}`);
      const data = await response.json();
      const keep = volumeSelect.value;
      volumeSelect.replaceChildren();
      const first = new Option(data.choices.length ? "Choose a volume or disk…" : "No disks reported yet: press Refresh", "");
      volumeSelect.add(first);
      data.choices.forEach((c) => volumeSelect.add(new Option(c.label, c.value, false, c.value === keep)));
      return data;
    };

    agentSelect.addEventListener("change", async () => {
      try {
        const data = await fillVolumes(agentSelect.value);
        status.textContent = data.reported_at ? `Disks as the agent reported them at ${data.reported_at}.` : "The agent has not reported its disks yet.";
      } catch (e) {
        status.textContent = `Could not load the disks: ${e.message}`;
      }
    });

    // Ask the agent for its disks now (askAgent: 30 s waits, 3 attempts).
    refresh.addEventListener("click", async () => {
      const agentId = agentSelect.value;
      refresh.disabled = true;
      try {
        const answer = await askAgent(`/api/agents/${agentId}/disks/refresh`, status, "Asking the agent for its disks…", "Could not refresh");
        if (answer) {
          const data = await fillVolumes(agentId);
          status.textContent = `Disks refreshed: ${data.choices.length} choice${data.choices.length === 1 ? "" : "s"}.`;
        }
      } catch (e) {
        status.textContent = `Could not refresh: ${e.message}`;
      } finally {
        refresh.disabled = false;
      }
    });
  }

  // --- Hyper-V VMs (job wizard) -----------------------------------------------------------------
  // The VMs come with the agent's disk report: ask for a fresh one (same retries as the disks),
  // then show the wizard again for that agent with the new list.
  const refreshVms = document.getElementById("refresh-vms");
  if (refreshVms) {
    const status = document.getElementById("vms-status");
    refreshVms.addEventListener("click", async () => {
      const agentId = document.getElementById("agent_id").value;
      refreshVms.disabled = true;
      try {
        const answer = await askAgent(`/api/agents/${agentId}/disks/refresh`, status, "Asking the agent for its virtual machines…", "Could not refresh");
        if (answer) window.location.assign(`/jobs/new?agent_id=${agentId}&engine=hyperv`);
      } catch (e) {
        status.textContent = `Could not refresh: ${e.message}`;
      } finally {
        refreshVms.disabled = false;
      }
    });
  }

  // --- remote folder browsing (job wizard) ----------------------------------------------------
  // The agent lists a folder on request; like the disk list, the server waits up to 30 s and
  // answers 504 with a command_id, and we wait again on the same command: 3 attempts in all.
  const browseButton = document.getElementById("browse-folders");
  if (browseButton) {
    const status = document.getElementById("folders-status");
    const panel = document.getElementById("folder-panel");
    const list = document.getElementById("folder-list");
    const shown = document.getElementById("folder-path");
    const up = document.getElementById("folder-up");
    let parent = null;
    const addLine = (id, line) => {
      const area = document.getElementById(id);
      const lines = area.value.split("\n").map((l) => l.trim()).filter((l) => l);
      if (!lines.includes(line)) lines.push(line);
      area.value = lines.join("\n");
      status.textContent = `${line} added to ${id === "exclude" ? "the excludes" : "the sources"}.`;
    };
    const button = (text, label, onClick) => {
      const b = document.createElement("button");
      b.type = "button";
      b.className = "small";
      b.textContent = text;
      b.setAttribute("aria-label", label);
      b.addEventListener("click", onClick);
      return b;
    };
    const show = (data) => {
      parent = data.parent;
      shown.textContent = data.path || "(top)";
      up.disabled = parent === null || parent === undefined;
      list.replaceChildren();
      data.entries.forEach((e) => {
        const li = document.createElement("li");
        const name = document.createElement("span");
        name.textContent = e.type === "file" ? `${e.name} (${e.size} bytes)` : `${e.name}${e.type === "dir" ? "/" : ""}`;
        li.append(name);
        if (e.type === "dir" || e.type === "drive") li.append(" ", button("Open", `Open ${e.path}`, () => load(e.path)));
        li.append(" ", button("Add", `Add ${e.path} as a source`, () => addLine("source_paths", e.path)));
        li.append(" ", button("Exclude", `Exclude ${e.path}`, () => addLine("exclude", e.path)));
        list.append(li);
      });
      panel.hidden = false;
      status.textContent = `${data.entries.length} entr${data.entries.length === 1 ? "y" : "ies"} in ${data.path || "the top level"}${data.truncated ? " (the first ones)" : ""}.`;
    };
    const load = async (path) => {
      const agentId = document.getElementById("agent_id").value;
      browseButton.disabled = true;
      try {
        const answer = await askAgent(`/api/agents/${agentId}/folders?${new URLSearchParams({ path })}`, status, "Asking the agent for the folder…", "Could not list the folder");
        if (answer) show(answer);
      } catch (e) {
        status.textContent = `Could not list the folder: ${e.message}`;
      } finally {
        browseButton.disabled = false;
      }
    };
    browseButton.addEventListener("click", () => load(""));
    up.addEventListener("click", () => { if (parent !== null && parent !== undefined) load(parent); });
  }

  // --- live run progress --------------------------------------------------------------------
  const runBox = document.getElementById("run");
  if (runBox && runBox.dataset.final !== "true") {
    const runId = runBox.dataset.runId;
    let lastEventId = Number(runBox.dataset.lastEventId || 0);
    const liveState = document.getElementById("live-state");
    const eventList = document.getElementById("events");

    const addEvent = (e) => {
      if (e.id <= lastEventId) return;
      lastEventId = e.id;
      const li = document.createElement("li");
      li.className = `event level-${e.level}`;
      li.dataset.eventId = e.id;
      const part = (tag, cls, text) => {
        const el = document.createElement(tag);
        el.className = cls;
        el.textContent = text;
        li.appendChild(el);
        return el;
      };
      part("span", "ev-time", e.time).title = e.when;
      part("span", "ev-level", e.level);
      part("code", "ev-code", e.code);
      if (e.message) part("span", "ev-message", e.message);
      if (e.meaning) part("p", "ev-meaning", e.meaning);
      eventList.appendChild(li);
      document.getElementById("no-events").hidden = true;
    };

    const apply = (payload) => {
      const run = payload.run;
      runBox.querySelectorAll("[data-field]").forEach((el) => {
        const value = run[el.dataset.field];
        if (value === undefined) return;
        el.textContent = value;
        if ("hideDash" in el.dataset) el.hidden = value === "—";
        if ("hideEmpty" in el.dataset) el.hidden = !value;
      });
      runBox.querySelectorAll(".status[data-field]").forEach((el) => {
        el.className = `status status-${run.status}`;
      });
      const bar = document.getElementById("progress");
      if (run.progress_pct !== null) bar.value = run.progress_pct;
      (payload.events || []).forEach(addEvent);
      runBox.dataset.final = run.final ? "true" : "false";
    };

    const finished = () => {
      liveState.textContent = "Finished.";
      setTimeout(() => window.location.reload(), 1200); // the final page: charts, restore button
    };

    const poll = async () => {
      liveState.textContent = "Live (polling every second).";
      for (;;) {
        try {
          const response = await fetch(`/runs/${runId}/live?after_id=${lastEventId}`, { headers: { Accept: "application/json" } });
          if (response.status === 401 || response.status === 404) {
            liveState.textContent = "Live updates stopped: signed out or no access.";
            return;
          }
          if (response.ok) {
            const payload = await response.json();
            apply(payload);
            if (payload.run.final && !payload.events.length) return finished();
          }
        } catch (e) {
          liveState.textContent = "Connection lost; retrying…";
        }
        await sleep(1000);
      }
    };

    if (window.EventSource) {
      let opened = false;
      const source = new EventSource(`/runs/${runId}/events/stream?after_id=${lastEventId}`);
      source.addEventListener("open", () => {
        opened = true;
        liveState.textContent = "Live: the page updates by itself.";
      });
      source.addEventListener("update", (message) => apply(JSON.parse(message.data)));
      source.addEventListener("end", (message) => {
        source.close();
        const data = JSON.parse(message.data);
        if (data.reason === "finished") finished();
        else liveState.textContent = "Live updates stopped: signed out or no access.";
      });
      source.addEventListener("error", () => {
        if (!opened) {
          source.close(); // never connected: fall back to polling
          poll();
        }
      });
    } else {
      poll();
    }
  }
})();
