"""What customers write: short verbatims by language, topic and sentiment.

The emerging complaint terms (`plant.EMERGING_TERMS`) appear only in `EMERGING_VERBATIMS`, so a
term's first appearance is the planted day and nothing else.
"""

from __future__ import annotations

TOPIC = {
    "delivery": "delivery",
    "installation": "installation",
    "support_call": "support",
    "support_chat": "support",
    "help_center": "support",
    "repair": "support",
    "store_visit": "store",
    "advisor_chat": "store",
    "checkout": "purchase",
    "store_checkout": "purchase",
    "sales_call": "purchase",
    "renewal_checkout": "price",
    "invoice": "billing",
}

# Short verbatims by language, topic and sentiment. None of them contains an emerging term.
VERBATIMS: dict[str, dict[str, dict[str, tuple[str, ...]]]] = {
    "fr": {
        "delivery": {
            "neg": (
                "Livraison avec {n} jours de retard et aucun suivi.",
                "Colis arrivé abîmé, j'ai dû tout renvoyer.",
                "Le livreur n'est jamais passé, colis récupéré au dépôt.",
            ),
            "pos": ("Livraison rapide, colis bien emballé.", "Reçu dès le lendemain, parfait."),
        },
        "installation": {
            "neg": (
                "Le technicien n'est pas venu au rendez-vous.",
                "Installation bâclée, la box ne marchait pas le soir même.",
                "Trois rendez-vous pour une simple installation.",
            ),
            "pos": (
                "Technicien ponctuel et très professionnel.",
                "Installation rapide, tout a marché du premier coup.",
            ),
        },
        "support": {
            "neg": (
                "J'ai attendu {n} minutes au téléphone pour rien.",
                "J'ai rappelé et toujours aucune solution.",
                "On me renvoie d'un service à l'autre, c'est épuisant.",
            ),
            "pos": (
                "Conseiller très à l'écoute, problème réglé en un appel.",
                "Réponse claire et rapide, merci.",
            ),
        },
        "billing": {
            "neg": (
                "Je ne comprends rien à ma facture.",
                "Des frais de {n} € sont apparus sans explication.",
                "Le montant prélevé ne correspond pas à mon offre.",
            ),
            "pos": ("Facture claire et conforme à mon offre.",),
        },
        "purchase": {
            "neg": (
                "Commande compliquée, le paiement a échoué deux fois.",
                "Le site a planté pendant la commande.",
            ),
            "pos": ("Commande simple et rapide.", "Souscription en ligne en quelques minutes."),
        },
        "store": {
            "neg": (
                "Beaucoup trop d'attente en boutique.",
                "Vendeur pressé qui ne connaissait pas les offres.",
            ),
            "pos": ("Vendeur de bon conseil en boutique.", "Accueil chaleureux en magasin."),
        },
        "price": {
            "neg": ("Trop cher pour ce que c'est.", "Le prix a augmenté sans prévenir."),
            "pos": ("Bon rapport qualité-prix.", "Offre de renouvellement intéressante."),
        },
        "general": {
            "neg": (
                "Très déçu, je vais sûrement partir à la concurrence.",
                "Service client injoignable, je ne recommande pas.",
            ),
            "neu": ("Correct, sans plus.", "Rien à signaler.", "Ça fait le travail."),
            "pos": (
                "Je recommande sans hésiter.",
                "Très satisfait depuis le début.",
                "Réseau fiable et appli pratique.",
            ),
        },
    },
    "en": {
        "delivery": {
            "neg": (
                "Delivery was {n} days late and tracking never updated.",
                "The parcel arrived damaged.",
                "The courier never came, I had to pick it up myself.",
            ),
            "pos": ("Fast delivery, well packed.", "Arrived the next day, great."),
        },
        "installation": {
            "neg": (
                "The technician missed the appointment.",
                "Sloppy installation, the box did not work that evening.",
            ),
            "pos": ("Punctual and very professional technician.", "Quick installation, worked first time."),
        },
        "support": {
            "neg": (
                "Waited {n} minutes on hold and nothing was solved.",
                "Called again and still no fix.",
                "Passed from one department to another, exhausting.",
            ),
            "pos": ("Friendly agent, fixed on the first call.", "Clear and quick answer, thanks."),
        },
        "billing": {
            "neg": (
                "I can't make sense of my bill.",
                "A {n} € fee appeared with no explanation.",
                "The amount taken does not match my plan.",
            ),
            "pos": ("Clear bill, matches my plan.",),
        },
        "purchase": {
            "neg": ("Ordering was a pain, payment failed twice.", "The website crashed during checkout."),
            "pos": ("Simple and quick ordering.", "Signed up online in minutes."),
        },
        "store": {
            "neg": ("Far too long a wait in the shop.", "Rushed salesperson who did not know the offers."),
            "pos": ("Helpful advice in the shop.", "Warm welcome in store."),
        },
        "price": {
            "neg": ("Too expensive for what it is.", "The price went up without notice."),
            "pos": ("Good value for money.", "Nice renewal offer."),
        },
        "general": {
            "neg": (
                "Very disappointed, probably switching provider.",
                "Customer service unreachable, would not recommend.",
            ),
            "neu": ("Fine, nothing more.", "Nothing to report.", "Does the job."),
            "pos": (
                "Would recommend without hesitation.",
                "Very happy since day one.",
                "Reliable network and handy app.",
            ),
        },
    },
}
EMERGING_VERBATIMS = {
    "fr": {
        "neg": (
            "Encore une facture erronée, {n} € de trop.",
            "J'ai eu un prélèvement en double ce mois-ci.",
            "Facture erronée puis prélèvement en double, inadmissible.",
            "Toujours pas remboursé du prélèvement en double.",
        ),
        "neu": ("Appel pour une facture erronée, on verra si c'est corrigé.",),
        "pos": (
            "Prélèvement en double remboursé rapidement, merci.",
            "Facture erronée corrigée en un appel.",
        ),
    },
    "en": {
        "neg": (
            "I got a double charge on my card this month.",
            "Wrong invoice again, {n} € too much.",
            "Double charge and a wrong invoice, unacceptable.",
            "Still waiting for a refund of the double charge.",
        ),
        "neu": ("Called about a wrong invoice, we will see if it gets fixed.",),
        "pos": ("Double charge refunded quickly, thanks.", "Wrong invoice fixed on the first call."),
    },
}
