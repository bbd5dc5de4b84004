"""Display labels and definitions of the report, in French and English.

Stage, touchpoint and metric codes are shown through `label`, with the code itself as the
fallback, so a stage added to the configuration shows up under its code until it has a label.
(The configuration's `labels.fr` / `labels.en` will extend these; until then they live here.)
"""

from __future__ import annotations

LANGUAGES = ("fr", "en")

# Okabe & Ito (2008), "Color Universal Design": distinguishable with every common colour-vision
# deficiency. Categories never rely on colour alone: bars carry labels and ECharts' decal patterns.
OKABE_ITO = ["#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000"]
SMALL_N_COLOUR = "#BBBBBB"

CODES: dict[str, dict[str, str]] = {
    "fr": {
        "discovery": "Découverte",
        "consideration": "Considération",
        "purchase": "Achat",
        "activation": "Activation",
        "usage": "Usage",
        "support": "Support",
        "renewal": "Renouvellement",
        "unmapped": "Non rattaché",
        "nps": "NPS",
        "csat": "CSAT",
        "ces": "CES",
        "cxi": "CXi",
        "kano": "Kano",
        "importance": "Importance",
        "(other)": "(autres)",
        "(ended)": "(fin)",
    },
    "en": {
        "discovery": "Discovery",
        "consideration": "Consideration",
        "purchase": "Purchase",
        "activation": "Activation",
        "usage": "Usage",
        "support": "Support",
        "renewal": "Renewal",
        "unmapped": "Unmapped",
        "nps": "NPS",
        "csat": "CSAT",
        "ces": "CES",
        "cxi": "CXi",
        "kano": "Kano",
        "importance": "Importance",
    },
}

TEXT: dict[str, dict[str, str]] = {
    "fr": {
        "title": "Parcours client : rapport",
        "generated": "Généré le {at}",
        "filters": "Filtres",
        "all_segments": "tous segments",
        "segment": "segment {segment}",
        "all_time": "toute la période",
        "period": "du {since} au {until}",
        "open": "…",
        "as_of": "données au {at} ({source})",
        "open_from": "jours non clos à partir du {day} (des événements peuvent encore arriver)",
        "n": "n = {n}",
        "small_n": "petit n (< {k}) : grisé",
        "missing": "Pas encore disponible : la vue « {view} » n'existe pas dans cet entrepôt.",
        "empty": "Aucune donnée : la vue « {view} » est vide{scope}.",
        "for_filters": " pour ces filtres",
        "stale": "Attention : les données datent du {at}, plus de {days} jours avant ce rapport.",
        "export_csv": "Exporter en CSV",
        "sec_map": "Carte du parcours",
        "sec_funnel": "Entonnoir du cycle de vie",
        "sec_dropoff": "Points d'abandon",
        "sec_moments": "Moments de vérité",
        "sec_satisfaction": "Satisfaction",
        "sec_signals": "Signaux faibles",
        "sec_money": "Argent",
        "sec_alerts": "Alertes",
        "sec_data": "Données",
        "sec_definitions": "Définitions",
        "map_stages": "Étapes du parcours, étape par étape (de {source})",
        "map_note": (
            "Chaque colonne est un rang d'étape ; des étapes consécutives identiques sont fusionnées ; "
            "un retour vers une étape antérieure apparaît comme un flux vers cette étape au rang suivant ; "
            "un parcours qui s'arrête n'a pas de flux sortant. {steps} premiers rangs."
        ),
        "funnel_reached": "Parcours ayant atteint chaque étape (pas un entonnoir : sans censure)",
        "funnel_reached_note": (
            "Un parcours compte à chaque étape que son chemin contient, dans n'importe quel ordre. "
            "Les parcours encore en cours ne sont pas distingués : l'entonnoir avec « en cours » et "
            "« non converti » viendra avec la vue funnel_steps."
        ),
        "funnel_steps": "Entonnoir « {funnel} » : atteints, en cours, non convertis",
        "went_on": "passés à l'étape suivante",
        "in_progress": "en cours",
        "not_converted": "non convertis",
        "journeys": "parcours",
        "answers": "réponses",
        "respondents": "répondants",
        "events": "événements",
        "answers_by_stage": "Réponses aux enquêtes reçues, par enquête et étape",
        "answers_note": "Les scores (NPS, CSAT, CES, CXi) viendront avec la vue scorecards.",
        "events_daily": "Événements par jour",
        "dead_letters": "Lettres mortes par raison",
        "freshness": "Fraîcheur",
        "build": "Construction des vues",
        "table_of": "Lignes de la vue « {view} »",
        "table_note": "Affichée en tableau en attendant que ce rapport la représente en graphique.",
        "finality": "Point de finalité",
        "quarantine": "Contrôles qualité et lots en quarantaine",
        "datasets": "Jeux de données publiés",
        "col_view": "vue",
        "col_latest_ingested_at": "dernière ingestion",
        "col_rows": "lignes",
        "col_reason": "raison",
        "col_n": "n",
        "col_stage": "étape",
        "col_survey": "enquête",
        "col_day": "jour",
    },
    "en": {
        "title": "Customer journey report",
        "generated": "Generated at {at}",
        "filters": "Filters",
        "all_segments": "all segments",
        "segment": "segment {segment}",
        "all_time": "all time",
        "period": "from {since} to {until}",
        "open": "…",
        "as_of": "data as of {at} ({source})",
        "open_from": "days from {day} on not over yet (events may still arrive)",
        "n": "n = {n}",
        "small_n": "small n (< {k}): greyed",
        "missing": "Not available yet: the view “{view}” does not exist in this warehouse.",
        "empty": "No data: the view “{view}” is empty{scope}.",
        "for_filters": " for these filters",
        "stale": "Warning: the data is as of {at}, more than {days} days before this report.",
        "export_csv": "Export as CSV",
        "sec_map": "Journey map",
        "sec_funnel": "Lifecycle funnel",
        "sec_dropoff": "Drop-off points",
        "sec_moments": "Moments of truth",
        "sec_satisfaction": "Satisfaction",
        "sec_signals": "Weak signals",
        "sec_money": "Money",
        "sec_alerts": "Alerts",
        "sec_data": "Data",
        "sec_definitions": "Definitions",
        "map_stages": "Journey stages, step by step (from {source})",
        "map_note": (
            "Each column is a step rank; consecutive steps at the same stage are merged; a loop back "
            "to an earlier stage shows as a flow to that stage at the next step; a journey that stops "
            "has no outgoing flow. First {steps} steps."
        ),
        "funnel_reached": "Journeys that reached each stage (not a funnel: no censoring)",
        "funnel_reached_note": (
            "A journey counts at every stage its path holds, in any order. Journeys still in progress "
            "are not told apart: the funnel with “in progress” and “not converted” comes with the "
            "funnel_steps view."
        ),
        "funnel_steps": "Funnel “{funnel}”: reached, in progress, not converted",
        "went_on": "went on to the next step",
        "in_progress": "in progress",
        "not_converted": "not converted",
        "journeys": "journeys",
        "answers": "answers",
        "respondents": "respondents",
        "events": "events",
        "answers_by_stage": "Survey answers received, by survey and stage",
        "answers_note": "Scores (NPS, CSAT, CES, CXi) come with the scorecards view.",
        "events_daily": "Events per day",
        "dead_letters": "Dead letters by reason",
        "freshness": "Freshness",
        "build": "Views build",
        "table_of": "Rows of the view “{view}”",
        "table_note": "Shown as a table until this report charts it.",
        "finality": "Finality point",
        "quarantine": "Quality checks and quarantined batches",
        "datasets": "Published datasets",
        "col_view": "view",
        "col_latest_ingested_at": "latest ingestion",
        "col_rows": "rows",
        "col_reason": "reason",
        "col_n": "n",
        "col_stage": "stage",
        "col_survey": "survey",
        "col_day": "day",
    },
}

# (term, French definition, English definition): plain words for people who do not read SQL.
DEFINITIONS: list[tuple[str, str, str]] = [
    (
        "drop-off / abandon",
        "Un client abandonne à une étape quand sa dernière activité y a lieu et que rien ne suit dans "
        "le délai de cette étape, ou quand une résiliation y met fin au cycle.",
        "A customer drops off at a stage when their latest activity is there and nothing follows within "
        "that stage's timeout, or when a cancellation ends the cycle there.",
    ),
    (
        "in progress / en cours",
        "Un client dont le délai n'est pas encore écoulé au point de finalité : il peut encore avancer, "
        "il n'est jamais compté comme perdu.",
        "A customer whose window has not closed at the finality point: they may still move on, and are "
        "never counted as lost.",
    ),
    (
        "not converted / non converti",
        "Un client dont toutes les tentatives ont vu leur fenêtre se fermer sans atteindre l'étape suivante.",
        "A customer all of whose attempts had their window close without reaching the next step.",
    ),
    (
        "moment of truth / moment de vérité",
        "Une interaction qui crée ou change l'impression du client, « quitte ou double » : une mauvaise "
        "expérience y est associée à beaucoup plus de départs. Une association, pas une preuve de cause.",
        "An interaction that creates or changes the customer's impression: a bad experience there is "
        "associated with many more customers leaving. An association, not proof of a cause.",
    ),
    (
        "NPS",
        "Net Promoter Score, sur 0–10 : % de promoteurs (9–10) moins % de détracteurs (0–6), de −100 à 100.",
        "Net Promoter Score, on 0–10: % promoters (9–10) minus % detractors (0–6), from −100 to 100.",
    ),
    (
        "CSAT",
        "Satisfaction client, sur 1–5 : la part des réponses 4 ou 5.",
        "Customer satisfaction, on 1–5: the share of answers 4 or 5.",
    ),
    (
        "CES",
        "Effort client : à quel point il a été facile d'obtenir ce que le client voulait (moyenne et part "
        "« facile », jamais mélangée entre échelles 1–5 et 1–7).",
        "Customer effort: how easy it was to get what the customer wanted (mean and share “easy”, never "
        "mixed across 1–5 and 1–7 scales).",
    ),
    (
        "CXi",
        "Qualité de l'expérience (formule historique du CXi) : pour trois questions sur 1–5 (répond aux "
        "besoins, facile, agréable), % 4–5 moins % 1–2, puis la moyenne des trois.",
        "CX quality (legacy CXi formula): for three 1–5 questions (meets needs, easy, enjoyable), % 4–5 "
        "minus % 1–2, then the mean of the three.",
    ),
    (
        "Kano",
        "Classe une fonctionnalité selon les réponses à deux questions (avec / sans) : attractive, "
        "proportionnelle, obligatoire, indifférente, inverse ou douteuse.",
        "Classes a feature from the answers to two questions (with / without it): attractive, "
        "one-dimensional, must-be, indifferent, reverse or questionable.",
    ),
    (
        "finality point / point de finalité",
        "Le moment jusqu'où les données sont complètes : aucun événement plus ancien ne peut encore "
        "arriver. Les résultats avant ce point ne changeront plus.",
        "The time up to which the data is complete: no older event can still arrive. Results before "
        "it will not change any more.",
    ),
    (
        "n",
        "Le nombre de parcours, clients ou réponses derrière un chiffre. Un petit n est grisé : le "
        "chiffre est fragile.",
        "The number of journeys, customers or answers behind a figure. A small n is greyed: the figure is fragile.",
    ),
]


def text(lang: str, key: str, **values: object) -> str:
    return TEXT[lang][key].format(**values)


def label(lang: str, code: str | None) -> str:
    """The display label of a stage, touchpoint or metric code; the code itself when unlabelled."""
    if code is None:
        return "—"
    return CODES.get(lang, {}).get(code, code)
