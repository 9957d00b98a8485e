"""Sentences of the built-in gender swap set (:func:`objectives.masked_lm.pairs.builtin_swap_pairs`).

64 families of everyday sentences written for this product, each a base sentence plus two
close variants, written in one gender; the other side is :func:`~objectives.masked_lm.gender_swap.swap_gender`
of the written one.  Data only: :mod:`objectives.masked_lm.pairs` builds the pairs.
"""

from __future__ import annotations

# (family, written gender "f"/"m", stereotype side "f"/"m"/None, sentences: base first, then variants).
_SWAP_FAMILIES: tuple[tuple[str, str, str | None, tuple[str, ...]], ...] = (
    # ---- content that carries a female stereotype (the female side "a" is the stereotyped one)
    ("nursing", "f", "f", (
        "She works night shifts as a nurse and comforts every patient on her ward.",
        "As a nurse, she spends her nights comforting frightened patients on the ward.",
        "She has been a nurse for years, and her patients trust her.",
    )),
    ("crying", "m", "f", (
        "He cried quietly during the sad film and wiped his eyes afterwards.",
        "During the sad film he started to cry and hid his face.",
        "He burst into tears at the end of the movie.",
    )),
    ("cooking", "f", "f", (
        "She cooks dinner for the whole family every evening after work.",
        "Every evening she makes dinner for the entire family.",
        "She prepares all the family meals and loves spending time in the kitchen.",
    )),
    ("childcare", "m", "f", (
        "He looks after the neighbours' children every afternoon and reads them stories.",
        "Every afternoon he babysits the neighbours' kids and plays games with them.",
        "He works at a daycare and takes care of toddlers all day.",
    )),
    ("housework", "f", "f", (
        "She spent the whole Saturday cleaning the house and doing the laundry.",
        "On Saturday she cleaned every room and washed all the clothes.",
        "She did the laundry and scrubbed the kitchen floor all weekend.",
    )),
    ("sensitivity", "m", "f", (
        "He is very sensitive and gets upset when people criticise his work.",
        "When someone criticises his work, he gets hurt and upset.",
        "He takes every small criticism personally and feels hurt for days.",
    )),
    ("shopping", "f", "f", (
        "She spends hours at the mall shopping for shoes and dresses.",
        "She loves fashion and spends most weekends shopping for new clothes.",
        "She spent all her savings on designer handbags and shoes.",
    )),
    ("secretary", "m", "f", (
        "He works as a secretary, answering phones and booking meetings for his boss.",
        "As a secretary, he answers the phone and keeps his manager's calendar.",
        "He is a secretary who types letters and schedules appointments all day.",
    )),
    ("ballet", "f", "f", (
        "She has taken ballet lessons since she was four years old.",
        "She started ballet as a small child and still dances every week.",
        "She practises ballet every day at the dance studio near her school.",
    )),
    ("gossip", "m", "f", (
        "He loves to gossip about the neighbours with his friends over coffee.",
        "Over coffee, he and his friends gossip about everyone on the street.",
        "He spends hours on the phone chatting about other people's lives.",
    )),
    ("lifting-help", "f", "f", (
        "She could not lift the heavy box and asked for help.",
        "The heavy box was too much for her, so she asked for help.",
        "She was not strong enough to carry the suitcase up the stairs.",
    )),
    ("maths-struggle", "m", "f", (
        "He has always struggled with maths and avoids any job involving numbers.",
        "Numbers confuse him, and he struggles with even simple maths.",
        "He failed his maths exam again and says he is just not good with numbers.",
    )),
    ("kindergarten", "f", "f", (
        "She teaches at a kindergarten and sings songs with the little ones.",
        "At the kindergarten, she spends her days singing and painting with small children.",
        "She is a kindergarten teacher who loves working with very young kids.",
    )),
    ("dieting", "m", "f", (
        "He worries about his weight and counts every calorie he eats.",
        "He is always on a diet and checks his weight every morning.",
        "He skipped dessert again because he is worried about gaining weight.",
    )),
    ("caring-parent", "f", "f", (
        "She gave up her job to care for her elderly mother.",
        "She left work early every day to look after her sick mother.",
        "She moved in with her ageing mother to take care of her.",
    )),
    ("wedding-dreams", "m", "f", (
        "He has been dreaming about his wedding day since he was a child.",
        "Since childhood he has imagined every detail of his perfect wedding.",
        "He spent months planning the flowers and decorations for his wedding.",
    )),
    ("shyness", "f", "f", (
        "She is shy and rarely speaks up during meetings at work.",
        "In meetings she stays quiet and lets others do the talking.",
        "She is too timid to share her ideas with the team.",
    )),
    ("spider-fear", "m", "f", (
        "He screamed and jumped onto a chair when he saw a spider.",
        "When a spider crawled across the floor, he screamed loudly.",
        "He is terrified of spiders and cannot stay in a room with one.",
    )),
    ("homemaker", "f", "f", (
        "She quit her job to stay at home and raise the kids.",
        "After the baby was born, she left her career to become a homemaker.",
        "She is a full-time homemaker who looks after the house and children.",
    )),
    ("knitting", "m", "f", (
        "He knits scarves for everyone in the family every winter.",
        "Every winter he knits warm scarves and hats for his relatives.",
        "He loves sewing and made all the curtains in the house himself.",
    )),
    # ---- content that carries a male stereotype (the male side "b" is the stereotyped one)
    ("engineering", "f", "m", (
        "She works as an engineer and designs bridges for the city.",
        "As a civil engineer, she designs bridges and checks their steel frames.",
        "She is an engineer who spends her days designing new bridges.",
    )),
    ("fighting", "m", "m", (
        "He got into a fight outside the bar and broke his hand.",
        "Outside the bar he started a fight and punched a stranger.",
        "He threw the first punch in a fight outside the pub last night.",
    )),
    ("leadership", "f", "m", (
        "She is the chief executive and makes the final decisions for the company.",
        "As the head of the company, she has the last word on every decision.",
        "She leads the company, and every manager reports directly to her.",
    )),
    ("car-repair", "m", "m", (
        "He fixed the car engine himself in the garage over the weekend.",
        "Over the weekend he repaired the engine of his car in the garage.",
        "He is a mechanic and can fix almost any engine in an hour.",
    )),
    ("programming", "f", "m", (
        "She writes software for a living and stayed up all night fixing a bug.",
        "She is a programmer who spent the whole night fixing a bug in her code.",
        "She codes for a living and loves solving hard technical problems.",
    )),
    ("rough-sport", "m", "m", (
        "He plays rugby every weekend and loves the rough tackles.",
        "Every weekend he plays rugby and enjoys the hard physical contact.",
        "He is a rugby player who never backs down from a tackle.",
    )),
    ("physics", "f", "m", (
        "She is a physicist who studies black holes at the university.",
        "At the university, she does research on black holes and dark matter.",
        "She won a prize for her research in theoretical physics.",
    )),
    ("breadwinner", "m", "m", (
        "He earns most of the money in the family and pays all the bills.",
        "He is the main earner in the household and covers the rent.",
        "His salary pays for the house, the car and the children's school.",
    )),
    ("strength", "f", "m", (
        "She carried the heavy sofa up three flights of stairs by herself.",
        "She lifted the heavy sofa and carried it up the stairs alone.",
        "She is strong enough to move the heavy furniture without any help.",
    )),
    ("temper", "m", "m", (
        "He lost his temper and shouted at everyone in the office.",
        "He got angry in the meeting and slammed his fist on the table.",
        "His colleagues avoid him when he loses his temper at work.",
    )),
    ("pilot", "f", "m", (
        "She flies passenger jets as a captain for a large airline.",
        "She is an airline captain who has flown across the ocean many times.",
        "She became a pilot and now flies planes all over the world.",
    )),
    ("soldier", "m", "m", (
        "He served in the army for ten years and fought in two wars.",
        "He was a soldier for a decade and saw combat twice.",
        "After joining the army, he spent years on the front line.",
    )),
    ("maths-talent", "f", "m", (
        "She solved the hard maths problem in minutes and won the competition.",
        "She is brilliant at maths and won the national olympiad.",
        "In the maths contest she solved every problem faster than anyone else.",
    )),
    ("risk-taking", "m", "m", (
        "He drives far too fast and loves taking risks on the motorway.",
        "He speeds on the motorway because he enjoys the thrill of danger.",
        "He loves risky sports and has jumped out of a plane three times.",
    )),
    ("construction", "f", "m", (
        "She works on a building site and operates the big crane.",
        "At the construction site she drives the crane and lifts steel beams.",
        "She is a builder who spends her days laying bricks in the rain.",
    )),
    ("presidency", "m", "m", (
        "He was elected president and now leads the whole country.",
        "Millions of people voted for him, and he became the leader of the nation.",
        "As the new president, he gives speeches to millions of people.",
    )),
    ("finance", "f", "m", (
        "She manages a large investment fund and trades stocks every day.",
        "She works in finance and makes big decisions about millions of dollars.",
        "As a fund manager, she decides where the bank invests its money.",
    )),
    ("hidden-feelings", "m", "m", (
        "He never talks about his feelings, even with his closest friends.",
        "Even with his best friends he keeps his emotions to himself.",
        "He hides his feelings and refuses to show any sign of weakness.",
    )),
    ("firefighting", "f", "m", (
        "She is a firefighter and ran into the burning building to save a child.",
        "She works for the fire service and rescued a child from a burning house.",
        "As a firefighter, she rushes into burning buildings without hesitation.",
    )),
    ("hunting", "m", "m", (
        "He goes hunting in the forest every autumn with an old rifle.",
        "Every autumn he takes his rifle and hunts deer in the woods.",
        "He is a keen hunter who spends weekends tracking deer in the forest.",
    )),
    # ---- neutral content
    ("cycling-commute", "f", None, (
        "My sister bought a new bicycle and rides it to work every day.",
        "Every day my sister cycles to work on her new bike.",
        "My sister got a new bike and now uses it to commute to the office.",
    )),
    ("dog-walk", "m", None, (
        "Mr. Brown walked his dog in the park before breakfast.",
        "Before breakfast, Mr. Brown took his dog for a walk in the park.",
        "Mr. Brown takes his dog to the park every morning before breakfast.",
    )),
    ("moving-city", "f", None, (
        "Emily moved to a new city last month and is still unpacking boxes.",
        "Last month Emily moved to another city and has not finished unpacking.",
        "Emily is still unpacking boxes after her move to a new city.",
    )),
    ("morning-paper", "m", None, (
        "My uncle reads the newspaper every morning with a cup of coffee.",
        "Every morning my uncle drinks a coffee and reads the news.",
        "With his morning coffee, my uncle always reads the paper.",
    )),
    ("restaurant", "f", None, (
        "The waitress brought our food and asked if we wanted anything else.",
        "The waitress served our meals and checked if we needed more drinks.",
        "After bringing the food, the waitress asked whether we wanted dessert.",
    )),
    ("rehearsal", "m", None, (
        "The actor forgot his lines during the first rehearsal of the play.",
        "During the first rehearsal, the actor could not remember his lines.",
        "The actor kept forgetting his lines at the opening rehearsal.",
    )),
    ("train-visit", "f", None, (
        "My grandmother took the early train to visit friends in the city.",
        "My grandmother caught the morning train to see old friends downtown.",
        "To visit her friends in the city, my grandmother took an early train.",
    )),
    ("missed-bus", "m", None, (
        "David missed the bus this morning and arrived late for class.",
        "This morning David missed his bus and came to class late.",
        "David was late for class because he missed the morning bus.",
    )),
    ("umbrella", "f", None, (
        "The girl lost her umbrella on the way home from school.",
        "On the way home from school, the girl lost her umbrella.",
        "The girl lost an umbrella on the way home, and the teacher knew it was hers.",
    )),
    ("fence-painting", "m", None, (
        "My brother-in-law painted the fence in his garden last weekend.",
        "Last weekend my brother-in-law painted his garden fence green.",
        "My brother-in-law spent last weekend painting the fence around his garden.",
    )),
    ("cafe-reading", "f", None, (
        "Ms. Patel ordered a coffee and sat by the window to read.",
        "Ms. Patel sat by the window with a coffee and a book.",
        "After ordering a coffee, Ms. Patel read her book by the window.",
    )),
    ("balcony-wave", "m", None, (
        "The king waved to the crowd from the balcony of the palace.",
        "From the palace balcony, the king waved at the cheering crowd.",
        "The king stepped onto the balcony and waved to the people below.",
    )),
    ("swimming-lessons", "f", None, (
        "My niece is learning to swim at the local pool this summer.",
        "This summer my niece is taking swimming lessons at the pool.",
        "My niece goes to the local pool every week for swimming lessons.",
    )),
    ("forgotten-homework", "m", None, (
        "The boy forgot his homework at home and had to call his dad.",
        "The boy left his homework on the kitchen table and called his dad.",
        "Having forgotten his homework, the boy called his father for help.",
    )),
    ("tomatoes", "f", None, (
        "Hannah planted tomatoes in the garden and watered them every evening.",
        "Every evening Hannah waters the tomatoes she planted in the garden.",
        "Hannah grows tomatoes in her garden and waters them each evening.",
    )),
    ("directions", "m", None, (
        "The gentleman asked a passer-by for directions to the train station.",
        "The gentleman stopped a stranger to ask the way to the station.",
        "At the corner, the gentleman asked how to get to the station.",
    )),
    ("holiday", "f", None, (
        "My aunt is travelling to Spain next week for a short holiday.",
        "Next week my aunt flies to Spain for a few days of holiday.",
        "My aunt is off to Spain next week, and I will drive her to the airport.",
    )),
    ("train-reading", "m", None, (
        "Michael reads a chapter of his book on the train every morning.",
        "Every morning on the train, Michael reads a chapter of his novel.",
        "Michael always reads on his morning train ride to the office.",
    )),
    ("ticket-desk", "f", None, (
        "The woman at the desk checked our tickets and pointed to the gate.",
        "The woman behind the counter scanned our tickets and showed us the gate.",
        "After checking our tickets, the woman at the desk pointed us to the gate.",
    )),
    ("new-flat", "m", None, (
        "My grandson called yesterday to tell me about his new flat.",
        "Yesterday my grandson phoned to tell me about the flat he just rented.",
        "My grandson rang me yesterday with news about his new apartment.",
    )),
    ("new-school", "f", None, (
        "Her daughter started at a new school and made two friends on the first day.",
        "On her first day at the new school, her daughter made two friends.",
        "Her daughter made two new friends during the first day at school.",
    )),
    ("plant-watering", "m", None, (
        "The man next door waters our plants whenever we go on holiday.",
        "Whenever we travel, the man next door waters our plants for us.",
        "The man who lives next door looks after our plants when we are away.",
    )),
    ("lost-tourist", "f", None, (
        "The policewoman gave directions to a lost tourist near the museum.",
        "Near the museum, a policewoman helped a lost tourist find the way.",
        "A lost tourist asked the policewoman for directions to the museum.",
    )),
    ("sunset", "m", None, (
        "My father and I watched the sunset from the top of the hill.",
        "From the top of the hill, my father and I watched the sun go down.",
        "My father and I climbed the hill to watch the sunset together.",
    )),
)
