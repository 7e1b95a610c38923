"""The pool planner: unlabeled pretraining items, disjoint from every task's test material.

Real files not used by a task and not in a valid/test group, short ones concatenated into
~20 s items and long ones cut into pieces; espeak paragraphs and soundfont phrases in
train-split variants and programs only; 10 % of the units per source held out.
"""

from __future__ import annotations

import math

import numpy as np

from audioscale.data.demo.plan import (
    HELDOUT_FRACTION,
    POOL_GAP,
    POOL_PIECE,
    RenderJob,
    RenderPlan,
    SizeSpec,
    SrcFile,
    make_job,
    seeded_rng,
)
from audioscale.data.demo.tasks import audible_key, espeak_variant_split, program_split
from audioscale.data.synth import SoundfontRenderer

# Sentences without digits for the espeak part of the pool (written for this project).
SENTENCES = {
    "en-us": [
        "The morning train was late again, so we walked along the river.",
        "Please leave your message after the tone and we will call you back.",
        "A small bird sang on the fence while the rain slowly stopped.",
        "She opened the window and the sound of the market filled the room.",
        "Nobody knew where the old map had come from.",
        "Turn left at the bakery and follow the road up the hill.",
        "The orchestra tuned their instruments before the concert began.",
        "We should paint the kitchen a brighter colour this summer.",
    ],
    "es": [
        "El tren de la mañana llegó tarde, así que caminamos junto al río.",
        "Por favor, deje su mensaje después de la señal.",
        "Un pájaro pequeño cantaba en la valla mientras paraba la lluvia.",
        "Abrió la ventana y el ruido del mercado llenó la habitación.",
        "Nadie sabía de dónde venía el viejo mapa.",
        "Gire a la izquierda en la panadería y siga la calle hacia arriba.",
    ],
    "de": [
        "Der Zug am Morgen hatte wieder Verspätung, also gingen wir am Fluss entlang.",
        "Bitte hinterlassen Sie eine Nachricht nach dem Signalton.",
        "Ein kleiner Vogel sang auf dem Zaun, während der Regen nachließ.",
        "Sie öffnete das Fenster, und der Lärm des Marktes füllte das Zimmer.",
        "Niemand wusste, woher die alte Karte stammte.",
        "Biegen Sie an der Bäckerei links ab und folgen Sie der Straße bergauf.",
    ],
    "fr": [
        "Le train du matin était encore en retard, alors nous avons longé la rivière.",
        "Veuillez laisser votre message après le signal sonore.",
        "Un petit oiseau chantait sur la clôture pendant que la pluie cessait.",
        "Elle ouvrit la fenêtre et le bruit du marché remplit la pièce.",
        "Personne ne savait d'où venait la vieille carte.",
        "Tournez à gauche à la boulangerie et suivez la route qui monte.",
    ],
    "it": [
        "Il treno del mattino era di nuovo in ritardo, così camminammo lungo il fiume.",
        "Per favore, lasci un messaggio dopo il segnale acustico.",
        "Un piccolo uccello cantava sulla staccionata mentre la pioggia smetteva.",
        "Aprì la finestra e il rumore del mercato riempì la stanza.",
        "Nessuno sapeva da dove venisse la vecchia mappa.",
        "Giri a sinistra al forno e segua la strada in salita.",
    ],
    "pt": [
        "O comboio da manhã chegou atrasado outra vez, por isso fomos a pé junto ao rio.",
        "Por favor, deixe a sua mensagem depois do sinal.",
        "Um pequeno pássaro cantava na cerca enquanto a chuva parava.",
        "Ela abriu a janela e o barulho do mercado encheu a sala.",
        "Ninguém sabia de onde vinha o mapa antigo.",
        "Vire à esquerda na padaria e siga a estrada a subir.",
    ],
}


def _pack(files: list[SrcFile], target: float) -> list[list[SrcFile]]:
    """Greedy packing in the given order into chunks of about ``target`` seconds."""
    chunks, cur, t = [], [], 0.0
    for f in files:
        cur.append(f)
        t += f.duration + POOL_GAP
        if t >= target:
            chunks.append(cur)
            cur, t = [], 0.0
    if cur:
        chunks.append(cur)
    return chunks


def _pool_units_real(
    plan: RenderPlan, source: str, files: list[SrcFile], cap: float | None, rng
) -> list[list[RenderJob]]:
    """Pool items from one real source; a unit is what goes to train or heldout whole."""
    ok = [
        f for f in files if f.origin not in plan.used and f"{source}:{f.group}" not in plan.blocked
    ]
    ok = [ok[i] for i in rng.permutation(len(ok))]
    if cap is not None:
        keep, t = [], 0.0
        for f in ok:
            if t >= cap:
                break
            keep.append(f)
            t += min(f.duration, POOL_PIECE)
        ok = keep
    units: list[list[RenderJob]] = []
    for f in [f for f in ok if f.duration > POOL_PIECE]:
        n = math.ceil(f.duration / POOL_PIECE)
        stem = f.origin.split(":", 1)[1].rsplit(".", 1)[0].replace("/", "__")
        unit = []
        for i in range(n):
            spec = {"path": f.origin, "offset": i * POOL_PIECE, "max_seconds": POOL_PIECE}
            job = make_job("pool", source, f"{stem}-{i:02d}", "file", spec, {"origin": f.origin})
            job.spec = {**spec, "read": f.path}
            unit.append(job)
        units.append(unit)
    for label in sorted({f.label for f in ok}):
        short = [f for f in ok if f.label == label and f.duration <= POOL_PIECE]
        for i, chunk in enumerate(_pack(short, 20.0)):
            spec = {"parts": [f.origin for f in chunk], "gap": POOL_GAP}
            job = make_job("pool", source, f"{label}-{i:03d}", "concat", spec, {})
            job.spec = {**spec, "read": [f.path for f in chunk]}
            job.row = {"origin": ";".join(f.origin for f in chunk)}
            units.append([job])
    return units


def _pool_units_espeak(variants: dict[str, str], seconds: float, rng) -> list[list[RenderJob]]:
    """Paragraphs of 4-7 sentences (~15 s) in train-split variants only."""
    train_vars = sorted(v for v, s in variants.items() if s == "train")
    langs = sorted(SENTENCES)
    units = []
    for i in range(math.ceil(seconds / 15.0)):
        lang = langs[int(rng.integers(len(langs)))]
        voice = f"{lang}+{train_vars[int(rng.integers(len(train_vars)))]}"
        sents = SENTENCES[lang]
        pick = rng.choice(len(sents), size=int(rng.integers(4, 8)), replace=True)
        spec = {
            "text": " ".join(sents[j] for j in pick),
            "voice": voice,
            "speed": int(rng.integers(140, 201)),
            "pitch": int(rng.integers(30, 71)),
        }
        units.append(
            [
                make_job(
                    "pool",
                    "espeak",
                    f"{voice}-{i:04d}",
                    "espeak",
                    spec,
                    {"origin": f"espeak:{voice}"},
                )
            ]
        )
    return units


def _phrase_events(synth: SoundfontRenderer, program: int, seconds: float, rng) -> list:
    """A random melody with occasional chords: notes of 0.15-1 s on a random walk of keys."""
    center = audible_key(synth, program, 45, 76, rng)
    if center is None:
        return []
    events, t, key = [], 0.0, center
    tempo = float(rng.uniform(0.7, 1.4))
    while t < seconds - 0.5:
        step = float(rng.choice([0.15, 0.25, 0.4, 0.6, 1.0])) * tempo
        key = int(np.clip(key + rng.integers(-5, 6), max(36, center - 12), min(84, center + 12)))
        for k in {key, key + int(rng.choice([3, 4, 7]))} if rng.random() < 0.25 else {key}:
            if synth.audible(program, k):
                dur = round(step * float(rng.uniform(0.8, 1.5)), 3)
                events.append([round(t, 3), dur, k, int(rng.integers(50, 121))])
        t += step
    return events


def _pool_units_music(
    synth: SoundfontRenderer, programs: dict[int, str], seconds: float, rng
) -> list[list[RenderJob]]:
    """Phrases of 8-16 s on train-split programs only (all 16 families)."""
    train_progs = sorted(p for p, s in programs.items() if s == "train")
    units, total, i = [], 0.0, 0
    while total < seconds:
        prog = train_progs[int(rng.integers(len(train_progs)))]
        dur = round(float(rng.uniform(8.0, 16.0)), 2)
        events = _phrase_events(synth, prog, dur, rng)
        i += 1
        if not events:
            continue
        spec = {"program": prog, "events": events, "seconds": dur}
        origin = f"soundfont:program-{prog:03d}"
        stem = f"p{prog:03d}-{i:04d}"
        units.append([make_job("pool", "soundfont", stem, "notes", spec, {"origin": origin})])
        total += dur
    return units


def plan_pool(
    plan: RenderPlan,
    real: dict[str, list[SrcFile]],
    synth: SoundfontRenderer,
    size: SizeSpec,
    seed: int,
) -> None:
    units: dict[str, list[list[RenderJob]]] = {}
    for source, files in real.items():
        cap = None if size.pool_real_cap_s is None else size.pool_real_cap_s.get(source, 0.0)
        units[source] = _pool_units_real(plan, source, files, cap, seeded_rng(seed, "pool", source))
    if size.pool_synth_s is not None:
        speech_s, music_s = size.pool_synth_s
    else:
        real_s = sum(_unit_seconds(u, real) for us in units.values() for u in us)
        deficit = max(0.0, size.pool_target_hours * 3600 - real_s)
        speech_s = max(600.0, 0.4 * deficit)
        music_s = max(900.0, deficit - speech_s)
    variants = espeak_variant_split(size, seed)
    units["espeak"] = _pool_units_espeak(variants, speech_s, seeded_rng(seed, "pool", "espeak"))
    units["soundfont"] = _pool_units_music(
        synth, program_split(seed), music_s, seeded_rng(seed, "pool", "soundfont")
    )
    for source, us in units.items():
        rng = seeded_rng(seed, "heldout", source)
        n_held = max(1, int(round(HELDOUT_FRACTION * len(us)))) if len(us) > 1 else 0
        held = set(rng.choice(len(us), size=n_held, replace=False).tolist()) if n_held else set()
        for i, unit in enumerate(us):
            for job in unit:
                job.row = {
                    "source": source,
                    "split": "heldout" if i in held else "train",
                    **job.row,
                }
                plan.add(job)


def _unit_seconds(unit: list[RenderJob], real: dict[str, list[SrcFile]]) -> float:
    """Planned seconds of a real-source unit (from probed durations)."""
    dur = {f.origin: f.duration for fs in real.values() for f in fs}
    total = 0.0
    for job in unit:
        if job.kind == "file":
            total += min(POOL_PIECE, dur[job.spec["path"]] - job.spec["offset"])
        else:
            total += sum(dur[o] + POOL_GAP for o in job.spec["parts"])
    return total
